"""Ordered background work for the pipeline: one worker thread, results in submission order.

:class:`Ordered` runs submitted calls on one background thread (or inline) and hands the
results back in the order they were given, each as ``(tag, result, exception)``, so a batch
can overlap decoding or file writing with the work of the main thread and still report in
input order. :func:`prefetched` keeps a bounded number of calls running ahead of a consumer.

OpenCV, zlib, dlib's HOG and torch release the GIL in their heavy parts, so the threads
overlap real work on a multi-core CPU.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Ordered", "prefetched"]


class Ordered:
    """Calls run on one background thread (``threaded``) or inline, results taken back in
    the order they were submitted: :meth:`submit` then :meth:`done` / :meth:`drain` yield
    ``(tag, result or None, exception or None)``; an exception of a call is handed back
    with its tag, never raised here."""

    def __init__(self, threaded: bool):
        self._pool = ThreadPoolExecutor(max_workers=1) if threaded else None
        self._queue: deque[tuple[Any, Future | tuple]] = deque()

    def submit(self, tag: Any, fn: Callable, *args) -> None:
        if self._pool is not None:
            self._queue.append((tag, self._pool.submit(fn, *args)))
            return
        try:
            self._queue.append((tag, (fn(*args), None)))
        except Exception as exc:  # handed back to the caller with its tag
            self._queue.append((tag, (None, exc)))

    def __len__(self) -> int:
        return len(self._queue)

    def _pop(self) -> tuple[Any, Any, BaseException | None]:
        tag, item = self._queue.popleft()
        if isinstance(item, tuple):
            return (tag, *item)
        try:
            return tag, item.result(), None
        except Exception as exc:  # handed back to the caller with its tag
            return tag, None, exc

    def done(self) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """Results whose work has finished, in order (stops at the first unfinished)."""
        while self._queue and (isinstance(self._queue[0][1], tuple) or self._queue[0][1].done()):
            yield self._pop()

    def drain(self) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """Every result, in order, waiting for each."""
        while self._queue:
            yield self._pop()

    def close(self) -> None:
        """Cancel the calls that have not started (they are dropped from the results) and
        wait for the one running, whose result stays to be taken."""
        if self._pool is None:
            return
        kept = deque(
            (tag, item) for tag, item in self._queue if isinstance(item, tuple) or not item.cancel()
        )
        self._queue = kept
        self._pool.shutdown(wait=True)


def prefetched(
    fn: Callable[[int], T], indices: list[int], depth: int, threaded: bool
) -> Iterator[tuple[int, T | None, BaseException | None]]:
    """``(index, fn(index) or None, exception or None)`` for each index in order, ``fn``
    running up to ``depth`` indices ahead on a background thread (inline when not
    ``threaded``)."""
    work = Ordered(threaded)
    todo = iter(indices)
    try:
        for i in todo:
            work.submit(i, fn, i)
            if len(work) >= depth:
                break
        while len(work):
            item = next(work.drain())
            nxt = next(todo, None)
            if nxt is not None:
                work.submit(nxt, fn, nxt)
            yield item
    finally:
        work.close()
