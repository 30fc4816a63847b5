"""One row of training figures to a DVCLive-like logger (or nowhere)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def log_metrics(logger: Any | None, step: int, row: Mapping[str, float]) -> None:
    """Log ``row`` at ``step`` with ``logger.log_metric`` and close the step (``next_step``).

    ``logger`` is a :class:`dvclive.Live` or anything with the same two methods and a ``step``
    attribute; ``None`` logs nothing (tests, library use).
    """
    if logger is None:
        return
    logger.step = step
    for name, value in row.items():
        logger.log_metric(name, value)
    logger.next_step()
