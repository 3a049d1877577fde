"""The one exception type a user can cause.

Both CLIs turn :class:`UsageError` into one line on stderr and exit status 2; any other
exception is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """Bad input from the user (a missing file, a corrupt model, a bad flag value).

    The message is one line that says what is wrong and what to do about it.
    """

    exit_code = 2


class SourceError(Exception):
    """A frame source that stopped delivering frames mid-run (camera unplugged, device gone)."""
