"""Files the project writes: checked before the work starts, replaced atomically at the end.

Every output a command writes (``--output``, ``--frames-out``, ``bench --json``, ``host report
--out`` ...) goes through :func:`check_output` before any capture or training starts, so a bad
path costs one line and exit 2, never a finished run.  :func:`atomic_write_bytes` then writes a
temporary file beside the destination and renames it over, so a reader never sees half a file
and an interrupted write leaves the old file intact.

What may be replaced: only a regular file.  A symlink is written *through* (its target is
replaced, the link stays); a directory, device, FIFO or socket is refused, so that running as
root with ``--output /dev/full`` cannot turn a device node into a regular file.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from device.errors import UsageError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    for test, what in _KINDS:
        if test(mode):
            return what
    return None


def resolve_output(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` will replace: ``path`` itself, or the final target of a
    symlink chain (a dangling link's target is created)."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def check_output(path: str | os.PathLike, flag: str = "output") -> Path:
    """Raise UsageError (one line naming ``flag`` and the fix) unless ``path`` can be written
    as a file: its folder exists and is writable, and what is there now (if anything) is a
    regular file or a symlink to one.  Returns the resolved destination."""
    if str(path) == "":
        raise UsageError(f"{flag}: give a file path")
    dest = resolve_output(path)
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}; choose another path") from None
    if st is not None:
        what = _not_regular(st.st_mode)
        if what:
            raise UsageError(f"{flag} {path} is {what}, not a file; give a file path "
                             "(existing regular files are replaced)")
    folder = dest.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: folder {folder} is not writable; choose another path")
    why = cannot_write_in(folder)
    if why:
        raise UsageError(f"{flag} {path}: cannot write in {folder} ({why}); choose another path")
    return dest


def cannot_write_in(folder: str | os.PathLike) -> str | None:
    """Why no file can be made in ``folder`` (an existing folder), or None.  os.access says yes
    to root for any folder, even where nothing can be made (/proc, a read-only mount): this
    makes and removes a temporary file there, as the atomic writes do."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def unique_path(folder: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``folder/stem + suffix``, or ``stem-2``, ``stem-3`` ... if taken: never an old file."""
    folder = Path(folder)
    cand = folder / f"{stem}{suffix}"
    n = 2
    while cand.exists() or cand.is_symlink():
        cand = folder / f"{stem}-{n}{suffix}"
        n += 1
    return cand


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace the regular file at ``path`` (or a symlink's target) with ``data``, atomically.

    Raises UsageError for a destination that is not a regular file, OSError for I/O errors
    (a full disk): the old file is then untouched and no temporary file is left."""
    dest = resolve_output(path)
    mode = None
    try:
        st = os.stat(dest)
        what = _not_regular(st.st_mode)
        if what:
            raise UsageError(f"{path} is {what}, not a file; nothing was written")
        mode = stat.S_IMODE(st.st_mode)
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        if mode is None:
            # mkstemp makes 0600 files; give a new file the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dumps(obj) -> str:
    """JSON as this project writes it: indented, and strict (NaN / Infinity are not JSON; a
    float that is not finite is a bug upstream, so it raises here rather than in a reader)."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, dumps(obj).encode())
