"""What both command lines (``device`` and ``host``) share: one-line errors, exit codes, the
argument types that reject bad values before any work starts, and the Ctrl-C / broken-pipe
handling.

Exit codes: 0 done, 1 the job ran but its check failed (a budget, an accuracy gate), 2 bad
input (a usage error: one line on stderr naming the fix), 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

from device.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...; see prog --help``), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where the help text does not already say what the default
    is and the default is a value (not None, not a store_true/store_false flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return text
        return super()._get_help_string(action)


# -- argument types: a bad value is a one-line usage error before anything starts ------------
def _number(kind, text: str, flag: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} takes a number (got {text!r})") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{flag} must be a finite number (got {text!r})")
    return v


def number(kind=float, lo=None, hi=None, lo_open=False, flag: str = "value", hi_open=False) -> Callable:
    """An argparse ``type`` for ints or finite floats within [lo, hi] (``lo_open``: > lo,
    ``hi_open``: < hi, e.g. a fraction that cannot be 1)."""
    def parse(text: str):
        v = _number(kind, text, flag)
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"{flag} must be {'>' if lo_open else '>='} {lo:g} (got {text})")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise argparse.ArgumentTypeError(f"{flag} must be {'<' if hi_open else '<='} {hi:g} (got {text})")
        return v
    parse.__name__ = flag  # argparse names the type in its messages
    return parse


def positive(kind=float, flag: str = "value"):
    return number(kind, lo=0, lo_open=True, flag=flag)


def threads_type(flag: str = "--threads"):
    """1 .. 4 x the cores: more threads than that only thrash (measured: 100x slower)."""
    return number(int, lo=1, hi=4 * (os.cpu_count() or 1), flag=flag)


def host_port(default_host: str = "127.0.0.1", flag: str = "--preview"):
    """An argparse ``type`` for ``PORT``, ``HOST:PORT`` or ``[IPV6]:PORT`` -> (host, port);
    port 0 asks the system for a free one."""
    def parse(text: str) -> tuple[str, int]:
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            host = default_host
        elif host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise argparse.ArgumentTypeError(f"{flag} takes PORT or HOST:PORT, an IPv6 address in "
                                             f"brackets ([::1]:8080) (got {text!r})")
        if not port.isdigit() or int(port) > 65535:
            raise argparse.ArgumentTypeError(f"{flag}: port {port!r} is not a number 0-65535 (got {text!r})")
        if not host or any(c.isspace() or c in "/?#@[]" for c in host):
            raise argparse.ArgumentTypeError(f"{flag}: {host!r} is not a host name or address (got {text!r})")
        return host, int(port)
    parse.__name__ = flag
    return parse


# -- running a CLI ----------------------------------------------------------------------------
def run_main(prog: str, build_parser: Callable[[], argparse.ArgumentParser],
             verbs: dict[str, Callable], argv=None) -> int:
    """Parse, dispatch to ``verbs[args.verb](args)``, and turn the user's errors into exit codes
    with one line on stderr.  Any other exception is a bug and keeps its traceback."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:   # --help (0) or a usage error (2, already printed)
            return exc.code if isinstance(exc.code, int) else 0
        return verbs[args.verb](args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C before or between the verb's own handling: quiet, the conventional 130.
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `device classify ... | head`: stop quietly; point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
