"""Wall-clock figures of a stage run, kept apart from its DVC metrics.

A stage's metrics file (``data/metrics/<name>.json``, under ``metrics:`` in ``dvc.yaml``) holds
only what the same inputs and params reproduce, so a fresh clone's ``dvc repro`` gives the
committed metrics back and ``dvc metrics diff`` shows real changes only. Seconds differ on every
run and machine: they go to ``data/metrics/timings/<name>.json`` (a plain output, tracked by git,
not a metric) through :func:`write_timings`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pipeline.io.outputs import write_json

SIGNIFICANT_DIGITS = 4


def rounded(seconds: float | None, digits: int = SIGNIFICANT_DIGITS) -> float | None:
    """``seconds`` to ``digits`` significant digits (a step of 0.001234 s and a run of 1234 s
    both keep their precision); None and 0 stay as they are."""
    if seconds is None or seconds == 0:
        return seconds
    return round(float(seconds), digits - 1 - math.floor(math.log10(abs(seconds))))


def write_timings(path: str | os.PathLike, **seconds: float | None) -> Path:
    """Write ``{name: seconds}`` as JSON to ``path`` atomically, each value :func:`rounded`.

    Args:
        path: the timings file (``data/metrics/timings/<name>.json``), its folder created.
        **seconds: the figures, e.g. ``seconds_this_run=812.4``; None where a figure does not
            apply to this run (a merge of shards has no generation time of its own).

    Returns ``path``. Raises TypeError for a value that is not a number or None (a caller's bug),
    ValueError for NaN or infinity; nothing is written then.
    """
    for name, value in seconds.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"write_timings: {name}={value!r} is not a number of seconds")
        if value is not None and not math.isfinite(value):
            raise ValueError(f"write_timings: {name}={value!r} is not a finite number of seconds")
    return write_json({name: rounded(value) for name, value in seconds.items()}, path)
