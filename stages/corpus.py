"""Stage ``corpus``: gather source videos and the intervals to cut from them.

Outputs ``data/raw/raw.parquet`` (one row per interval, failures included with their reason) and
``data/raw/annotations.parquet`` (ground-truth poses in source pixels; empty unless the source
ships them, as the sample corpus does). Rendered sample videos live in ``data/raw/sample/``;
``pats`` downloads go to a persistent cache (``corpus.pats.download_dir``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import Params
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, final_path, write_json
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.corpus")


def gather(params: Params, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(raw, annotations)`` tables for ``params.corpus.source``, writing into out_dir."""
    corpus = params.corpus
    empty_poses = tables.RAW_POSE.empty_table().to_pandas()
    if corpus.source == "sample":
        from pipeline.corpus.sample.render import render_sample_corpus

        sample = render_sample_corpus(
            corpus.sample, corpus.seed, corpus.fps, out_dir / "sample", corpus.workers
        )
        return sample.raw, sample.poses
    if corpus.source == "pats":
        from pipeline.corpus.pats import pats_corpus

        return pats_corpus(corpus.pats, out_dir, corpus.fps), empty_poses
    from pipeline.corpus.local import local_corpus

    return local_corpus(corpus.local, out_dir, corpus.fps), empty_poses


def main(args: argparse.Namespace, params: Params) -> None:
    final = Path(args.out)
    with atomic_directory(final) as tmp:
        raw, poses = gather(params, tmp)
        # Files written under the temporary directory are recorded by their final path.
        raw["path"] = [final_path(p, tmp, final) if p.startswith(str(tmp)) else p
                       for p in raw["path"].astype(str)]  # fmt: skip
        tables.write_table(raw, tmp / "raw.parquet", tables.RAW)
        tables.write_table(poses, tmp / "annotations.parquet", tables.RAW_POSE)
    counts = raw["status"].value_counts().to_dict()
    summary = {"source": params.corpus.source, "intervals": len(raw),
               "ok": int(counts.get("ok", 0)), "failed": int(counts.get("failed", 0)),
               "speakers": int(raw["speaker"].nunique())}  # fmt: skip
    write_json(summary, args.metrics)
    log.info("corpus: %s", summary)
    if summary["ok"] == 0:
        failed = raw[raw["status"] != "ok"]
        first = f"; first: {failed['reason'].iloc[0]}" if len(failed) else ""
        raise InputError(f"corpus: no usable interval ({len(failed)} failed{first}); "
                         f"see {final / 'raw.parquet'}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="data/raw")
    p.add_argument("--metrics", default="data/metrics/corpus.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
