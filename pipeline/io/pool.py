"""Run a function over work items in a process pool, in order, with a progress bar.

Workers are started with ``spawn`` by default so that native libraries with their own threads
(MediaPipe, ONNX, torch) are initialised fresh in each worker rather than copied mid-state by
``fork``; work that only needs numpy and subprocesses may ask for ``fork`` (cheaper, and it does
not re-import the caller's ``__main__``). Per-worker state (a detector, a model) is built once by
``initializer`` and kept in :data:`worker_state`; with ``workers == 1`` everything runs in this
process and the state's objects that have a ``close()`` method are closed at the end.

Before starting workers, :func:`compile_numba_caches` fills librosa's numba cache in this
process, so the workers only read it (see there why two compiling processes break it).
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Filled by the initializer in each worker process (and in this process when workers == 1).
worker_state: dict[str, Any] = {}


# librosa modules whose numba functions (gufuncs, vectorized ufuncs) compile, with
# ``cache=True``, as the module is imported.
NUMBA_CACHED_MODULES = ("librosa.util.utils", "librosa.core.audio", "librosa.beat")


def compile_numba_caches() -> None:
    """Import :data:`NUMBA_CACHED_MODULES` here, once, so their numba cache is complete before
    any worker imports them.

    numba writes a gufunc's two cache files (``name.N.nbc`` and ``guf-name.N.nbc``) one after
    the other; two processes compiling the same gufunc at once can leave a pair from different
    processes, and every later process that loads it segfaults (numba issue #10128; seen here as
    ``BrokenProcessPool`` in the sample corpus's render workers on a fresh venv, then in every
    run after). A no-op where librosa is not installed. A cache already broken that way is fixed
    by deleting the ``*.nbi``/``*.nbc`` files under librosa's ``__pycache__`` folders.
    """
    for name in NUMBA_CACHED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return


def _init_worker(initializer: Callable[..., dict[str, Any]] | None, args: tuple) -> None:
    worker_state.clear()
    if initializer is not None:
        worker_state.update(initializer(*args))


def _close_worker_state() -> None:
    for value in worker_state.values():
        if callable(getattr(value, "close", None)):
            value.close()
    worker_state.clear()


def map_ordered(
    function: Callable[[Item], Result],
    items: Sequence[Item] | Iterable[Item],
    workers: int = 1,
    initializer: Callable[..., dict[str, Any]] | None = None,
    initargs: tuple = (),
    desc: str | None = None,
    chunksize: int = 1,
    start_method: str = "spawn",
) -> list[Result]:
    """``[function(item) for item in items]`` over ``workers`` processes, results in input order.

    ``function`` must be a module-level callable (picklable) and should turn per-item failures
    into result values (a row with a reason) rather than raising: an exception here stops the
    whole map and is re-raised, which is right only for bugs.
    """
    items = list(items)
    bar = tqdm(total=len(items), desc=desc, unit="clip", disable=desc is None)
    try:
        if workers <= 1 or len(items) <= 1:
            _init_worker(initializer, initargs)
            try:
                results = []
                for item in items:
                    results.append(function(item))
                    bar.update()
                return results
            finally:
                _close_worker_state()
        compile_numba_caches()
        if start_method not in multiprocessing.get_all_start_methods():
            start_method = "spawn"
        context = multiprocessing.get_context(start_method)
        with ProcessPoolExecutor(
            max_workers=min(workers, len(items)), mp_context=context,
            initializer=_init_worker, initargs=(initializer, initargs),
        ) as pool:  # fmt: skip
            results = []
            for result in pool.map(function, items, chunksize=chunksize):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()
