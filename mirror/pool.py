"""A process pool for `process_image` that survives crashing decoders.

Input: `(path, sha256)` pairs submitted one at a time as the fetcher stores files.
Output: one `concurrent.futures.Future` per submission resolving to `ImageInfo | ImageFailure`
(wrap it with `asyncio.wrap_future` in an event loop). While the workers have a backlog,
waiting items travel to them in batches (`BATCH_ITEMS`), each item still with its own result.

`ProcessPoolExecutor` marks itself broken when any worker dies (a segfault in a C decoder, the
kernel's OOM killer, `os.abort`) and fails every pending item with `BrokenProcessPool`. Here
that only costs a rebuild: a fresh executor takes the work again. An item that was failed by
two broken pools is a suspect and is re-run alone in a single-worker "isolation" executor;
the item that kills its worker there is the culprit and resolves to `ImageFailure(reason=
"decoder-crashed")`, every other item resolves normally. (Items merely queued when a pool
breaks fail too; they get one free retry, so a long queue is not serialised.)

Each worker sets an address-space ceiling (RLIMIT_AS) of its start-up size plus
`options.worker_memory_mb`, so a hostile file makes that decode raise MemoryError (reported
as `decoder-crashed`) instead of exhausting the machine.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from mirror.imaging import process_image
from mirror.records import ImageFailure, ImageInfo, ImagingOptions

Result = ImageInfo | ImageFailure
Processor = Callable[[Path, str, Path, ImagingOptions], Result]


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers fork from a clean single-threaded server, never from the caller's
    # process (which runs an event loop and threads: forking it can deadlock).
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The server imports the imaging stack once (Pillow, numpy: ~0.3 s of CPU) and every
    # worker, first or rebuilt after a crash, forks with it loaded instead of importing it.
    context.set_forkserver_preload(["mirror._preload"])
    _start_fork_server()
    return context


def warm_up() -> None:
    """Start the fork server now rather than at the first `ImagePool`.

    The server imports the imaging stack (~0.3 s of CPU) before it can fork a worker; a run
    calls this before its scan, so that import runs on another core meanwhile and the first
    downloaded image finds a worker ready.
    """
    _mp_context()


def _start_fork_server() -> None:
    """Start the fork server with SIGINT blocked, so a Ctrl-C cannot kill it half-started.

    Ctrl-C reaches the whole process group. Python's fork server ignores SIGINT only once
    its preloads are imported; a Ctrl-C during that ~0.3 s killed it, and the run's next
    submission failed with EOFError instead of stopping cleanly. The mask is inherited by
    the server and the workers it forks (the run's parent decides how to stop); in this
    process a SIGINT that arrives meanwhile stays pending and is delivered right after.
    """
    import signal
    from multiprocessing import forkserver, resource_tracker

    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        forkserver.ensure_running()
        return
    # The fork server starts the resource tracker first, and starting that unblocks SIGINT
    # on its way out: start it before blocking.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(memory_mb: int | None) -> None:
    """Import the heavy modules, then cap the address space at start-up size + memory_mb."""
    import signal

    # Ctrl-C reaches the whole process group; the parent decides how to stop (and saves the
    # manifest) — a worker printing KeyboardInterrupt tracebacks only confuses the user.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numpy  # noqa: F401  (imported here so the address-space base below includes it)
    from PIL import Image

    Image.init()
    if not memory_mb:
        return
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        with open("/proc/self/statm") as fh:
            base = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux: cap the total instead
        base = 0
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _run(processor: Processor, path: Path, sha256: str, root: Path, opts: ImagingOptions) -> Any:
    return processor(path, sha256, root, opts)


def _run_batch(
    processor: Processor, items: list[tuple[Path, str]], root: Path, opts: ImagingOptions
) -> list[tuple[bool, Any]]:
    """Several items in one task; each item's exception is its own, not the batch's."""
    results: list[tuple[bool, Any]] = []
    for path, sha256 in items:
        try:
            results.append((True, processor(path, sha256, root, opts)))
        except Exception as exc:
            results.append((False, exc))
    return results


# Items not yet handed to the executor while it already has this many tasks per worker, and
# at most this many items per task. A task costs ~0.6 ms of CPU in hand-offs (pickling, pipe
# writes, four thread wake-ups between the caller, the executor's threads and a worker):
# grouping the backlog spreads that over several images, while an idle pool still gets each
# image at once. Items retried after a crash always travel alone.
TASKS_PER_WORKER = 2
BATCH_ITEMS = 8


class ImagePool:
    """`with ImagePool(workers, store_root, options) as pool: fut = pool.submit(path, sha)`.

    `workers=0` means one per core. `processor` is the task function (default
    `process_image`); it must be a picklable top-level function with the same signature.
    Leaving the `with` block waits for every submitted item (on an exception inside the
    block, pending items are cancelled instead).
    """

    def __init__(
        self,
        workers: int,
        store_root: Path,
        options: ImagingOptions,
        *,
        processor: Processor = process_image,
    ) -> None:
        self.workers = workers if workers > 0 else default_workers()
        self.store_root = Path(store_root)
        self.options = options
        self._processor = processor
        self._ctx = _mp_context()
        self._lock = threading.Lock()
        self._closed = False  # no new submissions
        self._cancelled = False  # shutting down without finishing the work
        self._generation = 0
        self._retired: list[cf.ProcessPoolExecutor] = []
        self._outstanding: set[cf.Future[Result]] = set()
        self._executor = self._new_executor(self.workers)
        self._waiting: deque[tuple[cf.Future[Result], Path, str]] = deque()  # not dispatched
        self._inflight = 0  # executor tasks not yet done
        self._suspects: queue.Queue[tuple[cf.Future[Result], Path, str] | None] = queue.Queue()
        self._isolation: threading.Thread | None = None
        self.crashes = 0  # worker deaths seen (for logs and tests)

    # -- public -----------------------------------------------------------------------------

    def submit(self, path: Path, sha256: str) -> cf.Future[Result]:
        outer: cf.Future[Result] = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("ImagePool is closed")
            self._outstanding.add(outer)
        outer.add_done_callback(self._forget)
        with self._lock:
            self._waiting.append((outer, Path(path), sha256))
        self._pump()
        return outer

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            self._closed = True
            self._cancelled = cancel
            pending = list(self._outstanding)
        if cancel:
            with self._lock:
                self._waiting.clear()
            for fut in pending:
                fut.cancel()
            self._executor.shutdown(wait=True, cancel_futures=True)
        else:
            cf.wait(pending)
            self._executor.shutdown(wait=True)
        if self._isolation is not None:
            self._suspects.put(None)
            self._isolation.join()
        for old in self._retired:
            old.shutdown(wait=True)

    def __enter__(self) -> ImagePool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(cancel=exc_type is not None)

    # -- internals --------------------------------------------------------------------------

    def _new_executor(self, workers: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self.options.worker_memory_mb,),
        )

    def _forget(self, fut: cf.Future[Result]) -> None:
        with self._lock:
            self._outstanding.discard(fut)

    def _pump(self) -> None:
        """Hand waiting items to the executor while it has room, grouped into batches."""
        while True:
            with self._lock:
                if not self._waiting or self._inflight >= TASKS_PER_WORKER * self.workers:
                    return
                batch = [
                    self._waiting.popleft() for _ in range(min(BATCH_ITEMS, len(self._waiting)))
                ]
                self._inflight += 1
                executor, generation = self._executor, self._generation
            batch = [item for item in batch if not item[0].done()]  # cancelled meanwhile
            try:
                if not batch:
                    raise _NothingToDo
                inner = executor.submit(
                    _run_batch,
                    self._processor,
                    [(path, sha) for _, path, sha in batch],
                    self.store_root,
                    self.options,
                )
            except (BrokenProcessPool, RuntimeError, _NothingToDo) as exc:
                self._task_done()
                if isinstance(exc, BrokenProcessPool):
                    self._rebuild(generation)
                    for outer, path, sha in batch:
                        self._dispatch(outer, path, sha, strikes=1)
                elif isinstance(exc, RuntimeError):  # shut down: close(cancel=True) raced us
                    for outer, _, _ in batch:
                        outer.cancel()
                continue
            inner.add_done_callback(
                lambda done, b=batch, g=generation: self._on_batch_done(done, b, g)
            )

    def _task_done(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _on_batch_done(
        self,
        inner: cf.Future[Any],
        batch: list[tuple[cf.Future[Result], Path, str]],
        generation: int,
    ) -> None:
        self._task_done()
        try:
            if inner.cancelled():
                for outer, _, _ in batch:
                    outer.cancel()
                return
            exc = inner.exception()
            if isinstance(exc, BrokenProcessPool):
                # Some worker died; any item of this batch may be the culprit. Each is
                # retried alone in a fresh pool; a second strike sends it to isolation.
                self._rebuild(generation)
                for outer, path, sha in batch:
                    self._dispatch(outer, path, sha, strikes=1)
            elif exc is not None:
                for outer, _, _ in batch:
                    _settle(outer, exc=exc)
            else:
                for (outer, _, _), (ok, value) in zip(batch, inner.result(), strict=True):
                    if ok:
                        _settle(outer, result=value)
                    else:
                        _settle(outer, exc=value)
        except BaseException as unexpected:
            # This runs on the executor's thread, which would only log the error: settle
            # what is left, or close() would wait for these items forever.
            for outer, _, _ in batch:
                _settle(outer, exc=unexpected)
            raise
        finally:
            self._pump()

    def _dispatch(self, outer: cf.Future[Result], path: Path, sha256: str, strikes: int) -> None:
        args = (self._processor, path, sha256, self.store_root, self.options)
        while strikes < 2:
            with self._lock:
                executor, generation = self._executor, self._generation
            try:
                inner = executor.submit(_run, *args)
            except BrokenProcessPool:  # broke before we noticed: rebuild and submit again
                self._rebuild(generation)
                strikes += 1
                continue
            except RuntimeError:  # shut down (close(cancel=True) raced with us)
                outer.cancel()
                return
            inner.add_done_callback(
                lambda done, g=generation, k=strikes: self._on_done(done, outer, path, sha256, g, k)
            )
            return
        self._suspect(outer, path, sha256)

    def _on_done(
        self,
        inner: cf.Future[Any],
        outer: cf.Future[Result],
        path: Path,
        sha: str,
        generation: int,
        strikes: int,
    ) -> None:
        if inner.cancelled():
            outer.cancel()
            return
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            # Some worker died; this item may or may not be the culprit. Retry it once in a
            # fresh pool; a second strike sends it to isolation to find out alone.
            self._rebuild(generation)
            self._dispatch(outer, path, sha, strikes + 1)
        elif exc is not None:
            _settle(outer, exc=exc)
        else:
            _settle(outer, result=inner.result())

    def _rebuild(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._cancelled:
                return
            self.crashes += 1
            # Never shut the broken executor down from here: this runs on its own manager
            # thread. Its workers are already gone; close() reaps it.
            self._retired.append(self._executor)
            self._executor = self._new_executor(self.workers)
            self._generation += 1

    def _suspect(self, outer: cf.Future[Result], path: Path, sha256: str) -> None:
        with self._lock:
            if self._isolation is None:
                self._isolation = threading.Thread(
                    target=self._isolate, name="imagepool-isolation", daemon=True
                )
                self._isolation.start()
        self._suspects.put((outer, path, sha256))

    def _isolate(self) -> None:
        """Re-run suspects one at a time in a one-worker pool: a death names the culprit."""
        single: cf.ProcessPoolExecutor | None = None
        while True:
            item = self._suspects.get()
            if item is None:
                break
            outer, path, sha256 = item
            if outer.done():
                continue
            if single is None:
                single = self._new_executor(1)
            try:
                result = single.submit(
                    _run, self._processor, path, sha256, self.store_root, self.options
                ).result()
            except BrokenProcessPool:
                with self._lock:
                    self.crashes += 1
                single.shutdown(wait=True)
                single = None
                _settle(
                    outer,
                    result=ImageFailure(
                        sha256,
                        "decoder-crashed",
                        "the decoder process died on this image (crash or out of memory)",
                    ),
                )
            except BaseException as exc:
                _settle(outer, exc=exc)
            else:
                _settle(outer, result=result)
        if single is not None:
            single.shutdown(wait=True)


class _NothingToDo(Exception):
    """A batch whose every item was cancelled before it could be sent."""


def _settle(
    fut: cf.Future[Result], result: Result | None = None, exc: BaseException | None = None
) -> None:
    """Resolve `fut` unless the consumer already cancelled it."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]
    except cf.InvalidStateError:
        pass
