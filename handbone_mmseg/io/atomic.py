"""Atomic file output: a reader never sees a half-written file, a failed writer leaves none.

A writer killed by SIGKILL cannot clean up, so the temporary file is named after its
process (``.NAME.PID.tmp``) and the next write of ``NAME`` removes those of dead processes.
SIGTERM (what ``kill``, torchrun and job schedulers send) becomes ``SystemExit(143)`` in a
tool (``terminate_on_sigterm``), so ``atomic_open`` removes its file on the way out.
"""
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SIGTERM_STATUS = 128 + signal.SIGTERM  # the shell's status of a process ended by SIGTERM


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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    tmp = path.parent / f'.{path.name}.{os.getpid()}.tmp'
    umask = os.umask(0)
    os.umask(umask)
    # 0666 less the umask, as open() would: outputs stay readable by other users
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
