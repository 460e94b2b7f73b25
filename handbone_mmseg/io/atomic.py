"""Atomic file output: a reader never sees a half-written file, a failed writer leaves none.

A writer killed by SIGKILL cannot clean up, so the temporary file is named after its
process (``.NAME.PID.tmp``) and the next write of ``NAME`` removes those of dead processes.
SIGTERM (what ``kill``, torchrun and job schedulers send) becomes ``SystemExit(143)`` in a
tool (``terminate_on_sigterm``), so ``atomic_open`` removes its file on the way out.

A write that fails (a full disk, a folder where the file should go) raises ``WriteError``,
whose message names the file; ``check_output_file`` and ``probe_write`` find most such
failures before the work that produces the output.
"""
import errno
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SIGTERM_STATUS = 128 + signal.SIGTERM  # the shell's status of a process ended by SIGTERM
# What the disk or a quota answers a write. Raised inside the caller's block (its writes to
# the file object carry no file name), it is the output that failed, not something it read.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# The size of the test write: enough to need a free block of the disk and to pass a quota
# that is already used up, small enough to cost nothing.
PROBE_BYTES = 1 << 16


class WriteError(OSError):
    """An output file that could not be written: ``FILE: could not write (REASON)``."""

    def __str__(self) -> str:
        return f'{self.filename}: could not write ({self.strerror})'


def _write_error(path: Path, error: OSError) -> WriteError:
    return WriteError(error.errno, error.strerror or str(error), str(path))


def probe_write(folder: str | Path) -> None:
    """Write ``PROBE_BYTES`` to disk in ``folder`` and remove them: a folder that refuses a
    file, a read-only disk, a full disk or quota fails here, before any work.

    Raises:
        OSError: what the system says (the folder must exist).
    """
    with tempfile.TemporaryFile(dir=folder) as f:  # unnamed where the system allows it
        f.write(bytes(PROBE_BYTES))
        f.flush()
        os.fsync(f.fileno())  # a full disk may accept the bytes into memory and fail here


def check_output_file(path: str | Path) -> Path:
    """Refuse an output file that cannot be written, before the work that produces it.

    Its folder is created if needed and proven writable (``probe_write``); the file itself
    is replaced by a rename, so its own permissions do not matter.

    Raises:
        ValueError: ``path`` is a folder, or its folder cannot be created or refuses the
            test write; one line naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f'{path}: is a folder; give the name of the file to write')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe_write(path.parent)
    except OSError as e:
        raise ValueError(f'{path}: cannot write here ({e.strerror or e})') from None
    return path


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(SIGTERM_STATUS)


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` so that cleanup code runs (main thread only).

    A handler someone else installed (e.g. a launcher's) is left as it is.
    """
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_exit)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_tmp(path: str | Path) -> list[Path]:
    """Remove the ``.NAME.PID.tmp`` files beside ``path`` whose process has ended.

    Returns:
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(rf'\.{re.escape(path.name)}\.(\d+)\.tmp')
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and int(match[1]) != os.getpid() and not pid_alive(int(match[1])):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_open(path: str | Path, mode: str = 'w', **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it onto ``path`` on success.

    The temporary file lives in the same folder so that ``os.replace`` is an atomic rename;
    on any exception (``SystemExit`` from SIGTERM included) it is removed and an existing
    ``path`` stays as it was. Temporary files of ``path`` left by dead processes go first.

    Raises:
        WriteError: the folder, the temporary file, the final rename (``path`` is a folder)
            or a write failed, or the caller's block raised a full disk or quota error;
            the message names ``path``. Other errors of the block pass unchanged.
    """
    path = Path(path)
    tmp = path.parent / f'.{path.name}.{os.getpid()}.tmp'
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path)
        umask = os.umask(0)
        os.umask(umask)
        # 0666 less the umask, as open() would: outputs stay readable by other users
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 & ~umask)
    except OSError as e:
        raise _write_error(path, e) from e
    in_block = True
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            in_block = False
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError) and (
                not in_block or (e.filename is None and e.errno in _FULL)):
            raise _write_error(path, e) from e
        raise
