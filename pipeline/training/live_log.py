"""Training curves: DVCLive loggers that follow the checkpoints, rows logged at a step, and the
summary of a finished run's curves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.training.resume import resumable_checkpoint


def log_metrics(logger: Any | None, step: int, row: Mapping[str, float]) -> None:
    """Log ``row`` at ``step`` with ``logger.log_metric`` and close the step (``next_step``).

    ``logger`` is a :class:`dvclive.Live` or anything with the same two methods and a ``step``
    attribute; ``None`` logs nothing (tests, library use). Setting ``step`` first makes the
    curves use the training step, also after a resume.
    """
    if logger is None:
        return
    logger.step = step
    for name, value in row.items():
        logger.log_metric(name, value)
    logger.next_step()


@contextmanager
def training_live(live_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike,
                  run_id: str | None) -> Iterator[Any]:  # fmt: skip
    """The DVCLive logger of a training stage, ended on leaving the block.

    The curves persist with the checkpoints: a run that will resume from ``checkpoint_dir``
    (same ``run_id``, see :func:`~pipeline.training.resume.resumable_checkpoint`) appends to
    them, a fresh one (or ``run_id`` None) restarts them. On exit the ``plots/metrics`` folder
    exists even when nothing was logged (a finished run resumed), since DVC declares it.
    """
    from dvclive import Live

    resuming = run_id is not None and resumable_checkpoint(checkpoint_dir, run_id) is not None
    live = Live(dir=str(live_dir), resume=resuming, save_dvc_exp=False, dvcyaml=None)
    try:
        yield live
    finally:
        live.end()
        (Path(live_dir) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)


def loss_summary(live_dir: str | os.PathLike,
                 names: Iterable[str] = ("loss", "mse")) -> dict[str, float]:  # fmt: skip
    """Mean logged value of the first and last ten log points of each curve in ``names``
    (``<name>_first10``, ``<name>_last10``): the whole run, across resumes. Curves not logged
    are left out."""
    summary = {}
    for name in names:
        path = Path(live_dir) / "plots" / "metrics" / f"{name}.tsv"
        if path.exists():
            values = pd.read_csv(path, sep="\t")[name].to_numpy()
            if len(values):
                summary[f"{name}_first10"] = float(np.mean(values[:10]))
                summary[f"{name}_last10"] = float(np.mean(values[-10:]))
    return summary
