"""The lives of a sweep's processes: workers end with their parent, and SIGTERM or SIGHUP stops a sweep cleanly.

:func:`follow_parent` ties a worker process to the sweep's process (it ends however the parent ends,
SIGKILL included); :func:`stop_pool` ends a process pool now rather than after its queue; and
:class:`StopOnSignal` turns a stop signal into :class:`Stopped` (a ``SystemExit`` with status 128 + the
signal number) at a point where no chunk is half written.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Generator, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: How often a worker checks that its parent is still alive, seconds.
_PARENT_POLL_S = 0.5
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
#: Signals that stop a sweep cleanly (where their handler is the default, i.e. they would kill it).
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


# --------------------------------------------------------------------------- worker processes
def follow_parent(parent: int) -> None:
    """End this worker process when the sweep's process ends, however it ends (even by SIGKILL).

    On Linux the kernel sends SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``); on every
    platform a daemon thread checks ``os.getppid()`` twice a second and exits when it changes.

    Args:
        parent: Process id of the sweep's process (the pool's owner).
    """
    # A forked worker inherits the sweep's SIGTERM handler, which only raises (the pool would catch it
    # and carry on): SIGTERM must end a worker. Ctrl-C reaches the whole process group; the parent stops
    # the pool, so workers ignore SIGINT rather than report a KeyboardInterrupt per task.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watcher thread below still ends the worker
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the parent watcher")
    if os.getppid() != parent:  # the parent died before the kernel could be told
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="ra-model-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Exit this process as soon as its parent is no longer ``parent`` (it died; we were re-parented)."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def stop_pool(pool: cf.ProcessPoolExecutor, futures: Sequence[cf.Future[Any]]) -> None:
    """Cancel what has not started, end the workers (chunks in progress are lost) and reap them.

    Args:
        pool: The sweep's process pool.
        futures: Its tasks.
    """
    for future in futures:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())  # private, but stable since 3.2
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            log.warning("worker process %s ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.join(timeout=5.0)


# --------------------------------------------------------------------------- stop signals
class Stopped(SystemExit):
    """A stop signal (SIGTERM, SIGHUP) ended the sweep; exit status 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        """Record the signal.

        Args:
            signum: The signal's number.
        """
        super().__init__(128 + signum)
        self.signum = signum


class StopOnSignal:
    """While a sweep runs in the main thread, turn SIGTERM/SIGHUP into :class:`Stopped`.

    Only signals whose handler is the default (which would kill the process on the spot) are taken
    over, and the previous handlers are restored on exit. Inside :meth:`held` a signal waits until the
    block ends (a chunk being written is finished first); a second signal while stopping is ignored.
    """

    def __init__(self) -> None:
        """Start with no handlers installed (see ``__enter__``)."""
        self._previous: dict[int, Any] = {}
        self._held = 0
        self._pending: int | None = None
        self._stopping = False

    def __enter__(self) -> StopOnSignal:
        """Install the handlers (main thread only: elsewhere signals cannot be handled)."""
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        """Restore the previous handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self._stopping:
            log.warning("%s again: the sweep is already stopping", signal.Signals(signum).name)
            return
        if self._held:
            self._pending = signum
            return
        self._stopping = True
        raise Stopped(signum)

    @contextlib.contextmanager
    def held(self) -> Generator[None, None, None]:
        """Hold stop signals until the block ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending is not None and not self._stopping:
                signum, self._pending = self._pending, None
                self._stopping = True
                raise Stopped(signum)
