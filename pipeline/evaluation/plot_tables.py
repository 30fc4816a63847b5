"""The evaluation's plot tables (``data/plots/evaluate/*.csv``, DVC plots): Sync distance per
audio offset, region PSNR per mode, whole-frame PSNR per chained segment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.evaluation.evaluate import VideoResult
from pipeline.io.outputs import atomic_file


def plot_tables(results: Mapping[str, Sequence[VideoResult]], modes: Sequence[str],
                summary: Mapping[str, Mapping],
                curves: Mapping[str, Sequence[float | None]],
                ) -> dict[str, pd.DataFrame]:  # fmt: skip
    """The three tables by file stem.

    Args:
        results: mode (ground truth included) -> its videos' results.
        modes: the generated modes, in table order.
        summary: mode -> the pooled metrics (``psnr_face`` / ``_hand`` / ``_body``).
        curves: mode -> mean PSNR per chained segment
            (:func:`~pipeline.evaluation.evaluate.segment_curves`, which the report draws too).

    ``sync_distance``: mean Sync distance per audio offset, one column per mode (a dip at 0
    means in sync); ``region_psnr``: one row per generated mode; ``psnr_by_segment``: mean
    whole-frame PSNR per chained segment (a falling line is drift along the video).
    """
    sync = pd.DataFrame({mode: np.mean([v.sync_distances for v in videos], axis=0)
                         for mode, videos in results.items() if videos})  # fmt: skip
    sync.insert(0, "offset", np.arange(len(sync)) - len(sync) // 2)
    region = pd.DataFrame([{"mode": mode} | {f"psnr_{r}": summary[mode][f"psnr_{r}"]
                                            for r in ("face", "hand", "body")}
                           for mode in modes])  # fmt: skip
    by_segment = pd.DataFrame([{"mode": mode, "segment": k, "psnr": value}
                               for mode, values in curves.items()
                               for k, value in enumerate(values)],
                              columns=["mode", "segment", "psnr"])  # fmt: skip
    return {"sync_distance": sync.round(5), "region_psnr": region,
            "psnr_by_segment": by_segment}  # fmt: skip


def write_plot_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path) -> None:
    """Each table as ``<folder>/<stem>.csv``, written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, table in tables.items():
        with atomic_file(folder / f"{stem}.csv") as path:
            table.to_csv(path, index=False)


__all__ = ["plot_tables", "write_plot_tables"]
