"""Run a function over work items in a process pool, in order, with a progress bar.

Workers are started with ``spawn`` by default so that native libraries with their own threads
(MediaPipe, ONNX, torch) are initialised fresh in each worker rather than copied mid-state by
``fork``; work that only needs numpy and subprocesses may ask for ``fork`` (cheaper, and it does
not re-import the caller's ``__main__``). Per-worker state (a detector, a model) is built once by
``initializer`` and kept in :data:`worker_state`; with ``workers == 1`` everything runs in this
process and the state's objects that have a ``close()`` method are closed at the end.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Filled by the initializer in each worker process (and in this process when workers == 1).
worker_state: dict[str, Any] = {}


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
