"""An exclusive inter-process lock on a file: ``with file_lock(path): ...`` runs the block in one process at a time.

On POSIX the lock is an exclusive ``fcntl.flock`` on ``path`` (created if missing, left in place afterwards). The
operating system releases it when the holder exits, even if it is killed, so a lock is never left held by a dead
process. ``flock`` locks belong to an open file, so two threads of one process that each call :func:`file_lock`
on the same path also exclude each other. On a network file system ``flock`` is only as reliable as the file
system's own locking.

Where ``fcntl`` is missing (Windows), the lock is the existence of ``path``: it is created with ``O_CREAT |
O_EXCL``, refreshed by a background thread while held, and deleted on release; a waiter polls for it to vanish.
A lock file not refreshed for ``stale_after`` seconds (its holder died) is deleted by the next waiter. Two
waiters that find the same stale lock at the same instant may both take it; that race needs a dead holder and
two simultaneous waiters.

Either way, a caller that has to wait logs ``waiting for <path> (held by another process)`` at INFO once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX platforms
    fcntl = None

__all__ = ["file_lock", "try_file_lock"]

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.1  # seconds between attempts of the lock-file fallback
DEFAULT_STALE_AFTER = 60.0  # seconds without a refresh after which a fallback lock file is considered dead


def _log_waiting(path: Path) -> None:
    log.info("waiting for %s (held by another process)", path)


def file_lock(
    path: str | os.PathLike,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    stale_after: float = DEFAULT_STALE_AFTER,
) -> contextlib.AbstractContextManager[None]:
    """Context manager holding an exclusive lock on ``path`` across processes; blocks until it is free.

    The parent directory is created if needed. ``poll_interval`` and ``stale_after`` apply only to the
    lock-file fallback used where ``fcntl`` is unavailable (see the module docstring). Not re-entrant: a
    second ``file_lock`` on the same path inside the block waits forever.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is not None:
        return _flock(path)
    return _lock_file(path, poll_interval=poll_interval, stale_after=stale_after)  # pragma: no cover


@contextlib.contextmanager
def try_file_lock(path: str | os.PathLike) -> Iterator[bool]:
    """Take the lock on ``path`` only if it is free now: yields True (held until the block ends) or False (another
    process holds it; nothing waits). For work that must not run beside the lock's holder, e.g. removing a cache
    entry that a run may be building or reading (``python -m distill.cache prune``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - the lock-file fallback
        if not _try_create(path, f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex}\n"):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``path``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log_waiting(path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lock_file(path: Path, *, poll_interval: float, stale_after: float) -> Iterator[None]:
    """Lock held by creating ``path`` exclusively; portable fallback for platforms without ``fcntl``."""
    token = f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex}\n"
    waited = False
    while not _try_create(path, token):
        if not waited:
            _log_waiting(path)
            waited = True
        if not _break_if_stale(path, stale_after):
            time.sleep(poll_interval)
    stop = threading.Event()
    refresher = threading.Thread(
        target=_refresh, args=(path, stop, max(stale_after / 4, 0.01)), name=f"refresh {path.name}", daemon=True
    )
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _try_create(path: Path, token: str) -> bool:
    """Create ``path`` holding ``token`` if it does not exist; False if it does."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, token.encode("utf-8"))
    finally:
        os.close(fd)
    return True


def _refresh(path: Path, stop: threading.Event, every: float) -> None:
    """Touch ``path`` every ``every`` seconds until ``stop`` is set, so waiters see the holder is alive."""
    while not stop.wait(every):
        with contextlib.suppress(OSError):
            os.utime(path)


def _break_if_stale(path: Path, stale_after: float) -> bool:
    """Delete ``path`` if it was not refreshed for ``stale_after`` seconds; True if it is gone now."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age < stale_after:
        return False
    log.warning("removing stale lock %s (not refreshed for %.0f s; its holder is gone)", path, age)
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)  # only one waiter can move a given file aside
    except FileNotFoundError:
        return True  # another waiter moved it, or its holder released it, first
    except OSError:
        return False  # e.g. still open elsewhere: wait and look again
    with contextlib.suppress(OSError):
        os.unlink(aside)
    return True
