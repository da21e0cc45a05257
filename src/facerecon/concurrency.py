"""Ordered background work for the pipeline: one worker thread, results in submission order.

:class:`Ordered` runs submitted calls on one background thread (or inline) and hands the
results back in the order they were given, each as ``(tag, result, exception)``, so a batch
can overlap decoding or file writing with the work of the main thread and still report in
input order. :func:`prefetched` keeps a bounded number of calls running ahead of a consumer.

OpenCV, zlib, dlib's HOG and torch release the GIL in their heavy parts, so the threads
overlap real work on a multi-core CPU. What holds the GIL (importing torch, MediaPipe,
reading dlib's model files) does not overlap in threads: :class:`ForkedWorker` runs such work
in a child process forked early, before the parent loads those libraries, and
:class:`ForkedPool` deals one job's items over several such children.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["ForkedPool", "ForkedWorker", "Ordered", "prefetched"]


class Ordered:
    """Calls run on ``threads`` background threads (``threaded``) or inline, results taken
    back in the order they were submitted: :meth:`submit` then :meth:`done` /
    :meth:`drain` yield ``(tag, result or None, exception or None)``; an exception of a call
    is handed back with its tag, never raised here. With several threads the calls must not
    depend on each other (they run side by side)."""

    def __init__(self, threaded: bool, threads: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads)) if threaded else None
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


class ForkedWorker:
    """A child process, forked when this is made, that runs ``setup()`` (loading libraries
    and models: make it before the parent loads anything big, e.g. torch, so the child shares
    none of it, and before the parent starts threads) and then ``fn(item)`` for the items of
    each :meth:`map`, in order; the results come back pickled, at most ``depth`` ahead of the
    consumer.

    The two processes run on two cores, the GIL of neither held by the other. An exception of
    ``setup`` is ignored (the work meets the problem again and reports it); one of ``fn`` is
    handed back with its item; a child that dies fails the items it had not done. The child
    ignores SIGINT (Ctrl-C is the parent's to handle) and exits when the parent goes away.
    Only where processes fork (:meth:`available`: Linux, not Windows or macOS' default).

    Example:
        >>> w = ForkedWorker(setup=load_models)   # before `import torch`
        >>> import torch                          # overlaps with load_models in the child
        >>> for item, result, exc in w.map(work, items): ...
        >>> w.close()
    """

    def __init__(self, setup: Callable[[], Any] | None = None, depth: int = 8):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        child, parent = _pipes(ctx)
        self._proc = ctx.Process(target=_serve, args=(setup, [child], [parent]), daemon=True)
        self._proc.start()
        for conn in child:  # the child's ends: a dead child is then an EOF here
            conn.close()
        self._jobs, self._results = parent
        self.depth = max(1, depth)

    @classmethod
    def _attached(cls, proc, parent_ends: tuple, depth: int) -> ForkedWorker:
        """A worker around a child forked elsewhere (:class:`ForkedPool`'s): ``proc`` its
        process or None (one forked by a sibling), ``parent_ends`` ``(jobs, results)``."""
        self = cls.__new__(cls)
        self._proc = proc
        self._jobs, self._results = parent_ends
        self.depth = max(1, depth)
        return self

    @staticmethod
    def available() -> bool:
        """Processes fork here, this one runs no other Python thread and has not loaded torch
        or MediaPipe (whose native threads and locks a child would inherit half-held; numpy's
        BLAS pool and OpenCV's are fork-safe): forking later is unsafe, so there is then no
        worker."""
        import multiprocessing
        import sys

        if "fork" not in multiprocessing.get_all_start_methods():
            return False
        return threading.active_count() == 1 and not {"torch", "mediapipe"} & set(sys.modules)

    def map(
        self, fn: Callable[[Any], T], items: list
    ) -> Iterator[tuple[Any, T | None, BaseException | None]]:
        """``(item, fn(item) or None, exception or None)`` for each item, in order, ``fn``
        running in the child (``fn`` and the items must pickle). The work is sent at once:
        the child starts on it before the results are asked for."""
        items = list(items)
        try:
            if items:
                self._jobs.send((fn, items))
        except OSError:  # the child is gone
            return iter(
                [(item, None, RuntimeError("the worker process is gone")) for item in items]
            )
        got: queue.Queue = queue.Queue(maxsize=self.depth)

        def receive() -> None:
            for _ in items:
                try:
                    message = self._results.recv()
                except (EOFError, OSError):
                    message = None
                got.put(message)
                if message is None or message[0] is None:
                    return

        if items:
            threading.Thread(target=receive, daemon=True).start()
        return self._results_of(items, got)

    def _results_of(self, items: list, got: queue.Queue) -> Iterator[tuple]:
        failed: BaseException | None = None
        for item in items:
            if failed is not None:
                yield item, None, failed
                continue
            message = got.get()
            if message is None:  # the child died: this item and the rest fail
                code = self._proc.exitcode if self._proc is not None else "unknown"
                failed = RuntimeError(f"the worker process died (exit code {code})")
                yield item, None, failed
                continue
            done, data = message
            try:
                result, exc = pickle.loads(data)
            except Exception as e:  # an exception that does not unpickle
                result, exc = None, RuntimeError(f"{type(e).__name__}: {e}")
            if done is None:  # the job itself failed in the child: every item does
                failed = exc
                yield item, None, failed
                continue
            yield done, result, exc

    def close(self) -> None:
        """Stop the child (at once: work it had not handed back is dropped). A child forked
        by a sibling (:class:`ForkedPool`) stops when its pipes close: at once when waiting
        for work, after its item when busy."""
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc.join(5)
        for conn in (self._jobs, self._results):
            conn.close()


class ForkedPool:
    """``processes`` :class:`ForkedWorker` children sharing each :meth:`map`'s items: item
    ``j`` goes to child ``j % processes`` and the results come back in item order, so the
    consumer sees exactly what one worker would give, sooner. A static deal, not work
    stealing: a slow item holds the results after it back (each child still works up to
    ``depth`` items ahead).

    ``setup()`` runs once: the first child runs it and then forks the others, which start
    with what it loaded (copy on write). Each child running its own setup side by side
    cost every one of them the setup's CPU (dlib's and MediaPipe's ~0.65 s) while the parent
    loads torch on the same cores; 32 1080p photos with two such children took as long as with
    one (2026-12-07), with the setup shared 2.4-2.6 s against 3.4-3.6 s (2026-12-08, 2 cores).
    The first child's own children are reaped by the system (it ignores SIGCHLD) and leave
    when their pipes close (:meth:`close`).

    With ``processes == 1`` it is one :class:`ForkedWorker`. Only where
    :meth:`ForkedWorker.available`.
    """

    def __init__(self, setup: Callable[[], Any] | None = None, processes: int = 1,
                 depth: int = 8):  # fmt: skip
        import multiprocessing

        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if processes == 1:
            self.workers = [ForkedWorker(setup, depth)]
            return
        ctx = multiprocessing.get_context("fork")
        ends = [_pipes(ctx) for _ in range(processes)]
        proc = ctx.Process(
            target=_serve, args=(setup, [c for c, _ in ends], [p for _, p in ends]), daemon=True
        )
        proc.start()
        for child, _ in ends:
            for conn in child:
                conn.close()
        self.workers = [
            ForkedWorker._attached(proc if k == 0 else None, parent, depth)
            for k, (_, parent) in enumerate(ends)
        ]

    available = staticmethod(ForkedWorker.available)

    def __len__(self) -> int:
        return len(self.workers)

    def map(
        self, fn: Callable[[Any], T], items: list
    ) -> Iterator[tuple[Any, T | None, BaseException | None]]:
        """:meth:`ForkedWorker.map` over the children: the same ``(item, result, exception)``
        triples, in item order."""
        items = list(items)
        k = len(self.workers)
        parts = [w.map(fn, items[i::k]) for i, w in enumerate(self.workers)]
        return (next(parts[j % k]) for j in range(len(items)))

    def close(self) -> None:
        """Stop every child (:meth:`ForkedWorker.close`)."""
        for w in self.workers:
            w.close()


def _pipes(ctx) -> tuple[tuple, tuple]:
    """A worker's two one-way pipes: ``((jobs to read, results to send): the child's,
    (jobs to send, results to read): the parent's)``."""
    jobs_out, jobs_in = ctx.Pipe(duplex=False)  # (receiving end, sending end)
    results_out, results_in = ctx.Pipe(duplex=False)
    return (jobs_out, results_in), (jobs_in, results_out)


def _serve(setup, child_ends: list[tuple], parent_ends: list[tuple]) -> None:
    """The child of :class:`ForkedWorker` (one pair of ends) or :class:`ForkedPool` (one
    pair per worker): ``setup()``, then, for a pool, a fork per further worker, each keeping
    its own ends; then each job's items in order. Every process leaves through ``os._exit``:
    nothing of the parent's (locks, buffers, atexit) runs here."""
    import os

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for conn in (c for pair in parent_ends for c in pair):  # held here, the parent's going
            conn.close()  # away would not be an EOF
        try:
            if setup is not None:
                setup()
        except Exception:  # the work meets it again and reports it with its item
            pass
        mine, siblings = 0, []
        if len(child_ends) > 1:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the system reaps the siblings
            for k in range(1, len(child_ends)):
                pid = os.fork()
                if pid == 0:
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    mine, siblings = k, []
                    break
                siblings.append(pid)
            if siblings:  # the parent's terminate() stops them too: they hold its sentinel
                signal.signal(signal.SIGTERM, functools.partial(_stop, siblings))
        for k, pair in enumerate(child_ends):  # each keeps only its own ends open
            if k != mine:
                for conn in pair:
                    conn.close()
        _serve_jobs(*child_ends[mine])
    finally:
        os._exit(0)


def _stop(pids: list[int], *_) -> None:
    """SIGTERM handler of a pool's first child: the siblings it forked, then itself."""
    import os

    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    os._exit(0)


def _serve_jobs(jobs, results) -> None:
    while True:
        try:
            fn, items = jobs.recv()
        except (EOFError, OSError):  # the parent is gone or closed us
            return
        except Exception as exc:  # a job that does not unpickle: all its items fail
            if not _send(results, (None, _pickled((None, exc)))):
                return
            continue
        for item in items:
            try:
                out: tuple = (fn(item), None)
            except Exception as exc:
                out = (None, exc)
            if not _send(results, (item, _pickled(out))):
                return


def _pickled(out: tuple) -> bytes:
    try:
        return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception: its message
        return pickle.dumps((None, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _send(conn, message) -> bool:
    try:
        conn.send(message)
        return True
    except OSError:  # the parent is gone
        return False
