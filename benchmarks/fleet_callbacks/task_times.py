"""Ansible callback for benchmarks/fleet.py: one JSON line per (host, task) with its start and
end (monotonic seconds) and status, appended to $MNIST_EDGE_TASK_TIMES.  Enabled only by the
benchmark (ANSIBLE_CALLBACK_PLUGINS + ANSIBLE_CALLBACKS_ENABLED=task_times)."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: per host and task start/end times as JSON lines
description: writes to the file named by MNIST_EDGE_TASK_TIMES
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._start = {}
        self._path = os.environ.get("MNIST_EDGE_TASK_TIMES")

    def v2_runner_on_start(self, host, task):
        self._start[(host.get_name(), task._uuid)] = time.monotonic()

    def _done(self, result, status):
        host, task = result._host.get_name(), result._task
        t0 = self._start.pop((host, task._uuid), None)
        if self._path and t0 is not None:
            with open(self._path, "a") as f:
                f.write(json.dumps({"host": host, "task": task.get_name().split(" : ")[-1], "status": status,
                                    "start": t0, "end": time.monotonic()}) + "\n")

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")
