"""Who is writing an output: lock files and staging folders that record their writer.

A record holds the writer's pid, host and start time. A writer killed by SIGKILL (or a
crashed machine) cannot remove its lock or staging folder, so a later run may, but only
when the record proves the writer dead: written on this host by a pid that no longer runs.
A record of another host, or none at all, may belong to a live writer and is left alone.
"""
import json
import os
import shutil
import socket
import time
from pathlib import Path

from .atomic import atomic_open, pid_alive

OWNER_FILE = '.owner.json'


def owner_record() -> dict:
    """This process as a writer: ``pid``, ``host``, ``started`` (local time)."""
    return dict(pid=os.getpid(), host=socket.gethostname(),
                started=time.strftime('%Y-%m-%d %H:%M:%S'))


def read_owner(path: str | Path) -> dict | None:
    """The record in ``path``, or None if it is missing, unreadable or not a record."""
    try:
        record = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get('pid'), int) or \
            record['pid'] < 1 or not isinstance(record.get('host'), str):
        return None
    return record


def is_mine(record: dict | None) -> bool:
    """Whether ``record`` names this process."""
    return record is not None and record['pid'] == os.getpid() and \
        record['host'] == socket.gethostname()


def is_stale(record: dict | None) -> bool:
    """Whether ``record`` names a process of this host that has ended."""
    return record is not None and record['host'] == socket.gethostname() and \
        record['pid'] != os.getpid() and not pid_alive(record['pid'])


def describe(record: dict | None) -> str:
    """``pid 123 on host, since ...`` for an error message."""
    if record is None:
        return 'a writer whose record cannot be read'
    return f'pid {record["pid"]} on {record["host"]}, since {record.get("started", "?")}'


def acquire_lock(path: str | Path) -> bool:
    """Make this process the holder of the lock file ``path``; False if another writer
    holds it (``read_owner(path)`` names it).

    The file is created with ``O_EXCL``, so of two writers exactly one gets it. A lock this
    process holds already is kept; a stale one (``is_stale``) is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock removed by two runs at once: each tries again
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            record = read_owner(path)
            if is_mine(record):
                return True
            if not is_stale(record):  # unreadable included: it may be written right now
                return False
            _remove_stale(path, record)
            continue
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(owner_record(), f)
        return True
    return False


def _remove_stale(path: Path, record: dict) -> None:
    """Remove a stale lock, unless another run replaced it since it was read."""
    # renamed first: removing by name could remove a fresh lock that replaced it
    moved = path.with_name(f'{path.name}.{os.getpid()}.stale')
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return
    if read_owner(moved) != record:  # a live writer's: put it back
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
    moved.unlink(missing_ok=True)


def release_lock(path: str | Path) -> None:
    """Remove the lock file ``path`` if this process holds it."""
    if is_mine(read_owner(path)):
        Path(path).unlink(missing_ok=True)


def write_owner(folder: str | Path) -> Path:
    """Record this process as the writer of ``folder`` (``folder/.owner.json``)."""
    path = Path(folder) / OWNER_FILE
    with atomic_open(path, 'w', encoding='utf-8') as f:
        json.dump(owner_record(), f)
    return path


def remove_stale_folders(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the folders ``parent/<prefix>*`` whose recorded writer is dead (``is_stale``).

    Returns:
        The folders removed.
    """
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False) and \
                is_stale(read_owner(Path(entry.path) / OWNER_FILE)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed
