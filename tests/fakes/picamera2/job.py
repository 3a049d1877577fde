"""picamera2/job.py, as shipped (0.3.36 l. 8-93), with the two differences older releases have:
``get_result`` took no timeout before 0.3.17 and ``cancel`` arrived in 0.3.20 (git diff
v0.3.16..v0.3.17 and v0.3.19..v0.3.20 of job.py)."""

from concurrent.futures import CancelledError, Future

from ._version import VERSION


class Job:
    def __init__(self, functions, signal_function=None):
        self._functions = functions
        self._future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None
        self.calls = 0

    def execute(self) -> bool:
        # job.py l. 38-67: run the stages in turn; a stage that is not done yet waits for the
        # next frame; an exception ends the job with that exception.
        assert self._functions, "Job already completed!"
        try:
            while self._functions:
                done, result = self._functions[0]()
                self.calls += 1
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self) -> None:
        # l. 69-76
        assert not self._functions, "Job not finished!"
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    if VERSION >= (0, 3, 17):
        def get_result(self, timeout=None):
            return self._future.result(timeout=timeout)
    else:
        def get_result(self):
            return self._future.result()

    if VERSION >= (0, 3, 20):
        def cancel(self) -> None:
            self._future.set_exception(CancelledError())
