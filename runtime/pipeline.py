"""Overlap the three stages of a file job: read and convert chunk i + 1 on a reader thread and
write chunk i - 1 on a writer thread while chunk i is scored (onnxruntime releases the GIL while
it computes, and so do most of numpy's conversions and file writes).

Both queues hold one item, so at most three input chunks are alive at a time (one being read,
one waiting, one being scored) and the writer is at most one chunk behind: memory stays flat
whatever the file's size or the writer's speed. Order is kept (one reader, one writer, FIFO).
A reader or writer error stops the job in the calling thread with the same exception, so the
one-line messages and the no-partial-output rule of the serial path hold unchanged. When the job
stops early (an error, SIGTERM, Ctrl-C) the threads are told to stop and waited for at most
STOP_WAIT_S: a reader blocked on a quiet pipe, or a writer on a stalled one, must not hold the
signal's exit hostage (the serial path stopped at once). Such a thread ends by itself once its
read or write returns, closing its source; it is a daemon, so it never keeps the process alive.
"""

from __future__ import annotations

import queue
import threading
from functools import partial
from typing import Any, Callable, Iterable, Iterator

_DONE = object()
STOP_WAIT_S = 1.0  # how long an early stop waits for a thread blocked in a read or a write
POLL_S = 0.1  # how often a reader blocked on a full queue looks whether it was told to stop


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetch:
    """Iterate `items` (a generator: reading and converting a file's chunks) on a background
    thread, at most `depth` items ahead of the consumer. An exception raised by `items` is
    raised by this iterator at the same position. `close()` stops the reader and closes the
    generator (its files); use it as a context manager."""

    def __init__(self, items: Iterable, depth: int = 1, name: str = "gen-reader"):
        self._items = iter(items)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue `item`; False (not queued) once told to stop."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
            else:
                self._put(_DONE)
                return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failure(exc))
            return
        close = getattr(self._items, "close", None)  # told to stop: release the source (its files) here,
        if close is not None:                        # in the thread that runs it
            close()

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop reading ahead; the reader closes its source as it stops (safe to call twice).
        Waits for it at most STOP_WAIT_S (it may be blocked in a read)."""
        self._stop.set()
        while True:  # empty the queue, so that nothing read ahead stays referenced
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(STOP_WAIT_S)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WriteBehind:
    """Run write calls in order on a background thread, at most `depth` waiting: `submit`
    blocks while the writer is that far behind. The first exception of a write is raised by
    the next `submit` or by `finish`; later writes are then skipped."""

    def __init__(self, depth: int = 1, name: str = "gen-writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> None:
        self._raise()
        self._queue.put(partial(fn, *args, **kwargs))

    def finish(self) -> None:
        """Wait for every submitted write; raise the first error of any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def stop(self) -> None:
        """Drop the writes not started and wait for the one running, at most STOP_WAIT_S (on
        failure, before the output is aborted); errors are not raised."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:  # only this thread puts, and it just emptied the queue
                pass
            self._thread.join(STOP_WAIT_S)


class Serial:
    """WriteBehind's interface, writing in the calling thread (the serial path)."""

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> None:
        fn(*args, **kwargs)

    def finish(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Plain:
    """Prefetch's interface over a plain iterator (the serial path)."""

    def __init__(self, items: Iterable):
        self._items = iter(items)

    def __iter__(self) -> Iterator:
        return self._items

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stages(items: Iterable, pipelined: bool) -> tuple[Prefetch | _Plain, WriteBehind | Serial]:
    """The reader and the writer of a file job: background threads, or the caller's own."""
    if not pipelined:
        return _Plain(items), Serial()
    writer = WriteBehind()
    try:
        return Prefetch(items), writer
    except BaseException:
        writer.stop()
        raise
