"""Stage ``corpus``: gather source videos and the intervals to cut from them.

Gathers ``corpus.source`` or every source of ``corpus.sources`` (e.g. PATS speakers and a
local CNAS folder, each with its own settings and language) into one table whose ``source``
column names where each row came from.

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

from pipeline.config import CorpusParams, Params, ResolvedSource
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, final_path, write_json
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.corpus")


def gather_source(source: ResolvedSource, corpus: CorpusParams,
                  out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """``(raw, annotations)`` of one source, its rows' ``source`` set to the source's name."""
    empty_poses = tables.RAW_POSE.empty_table().to_pandas()
    if source.kind == "sample":
        from pipeline.corpus.sample.render import render_sample_corpus

        sample = render_sample_corpus(source.settings, corpus.seed, corpus.fps,
                                      out_dir / source.name, corpus.workers)  # fmt: skip
        raw, poses = sample.raw, sample.poses
    elif source.kind == "pats":
        from pipeline.corpus.pats import pats_corpus

        raw, poses = pats_corpus(source.settings, out_dir, corpus.fps), empty_poses
    else:
        from pipeline.corpus.local import local_corpus

        raw, poses = local_corpus(source.settings, out_dir, corpus.fps), empty_poses
    return raw.assign(source=source.name), poses


def gather(params: Params, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(raw, annotations)`` of every source of ``corpus`` (``source`` or ``sources``), in
    order, writing into ``out_dir``.

    Raises InputError when two sources give the same clip or video id (the split, the
    annotations and every later table key on them)."""
    parts = [gather_source(source, params.corpus, out_dir)
             for source in params.corpus.resolved_sources()]  # fmt: skip
    raw = pd.concat([r for r, _ in parts], ignore_index=True)
    poses = pd.concat([p for _, p in parts], ignore_index=True)
    for key in ("clip_id", "video_id"):
        owners = raw.groupby(key)["source"].unique()
        shared = owners[owners.map(len) > 1]
        if len(shared):
            first = shared.index[0]
            raise InputError(f"corpus: {len(shared)} {key}s come from more than one source "
                             f"(first: {first!r} from {', '.join(shared.iloc[0])}); give each "
                             f"source its own videos")  # fmt: skip
    return raw, poses


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
    names = [source.name for source in params.corpus.resolved_sources()]
    summary = {"source": "+".join(names), "intervals": len(raw),
               "ok": int(counts.get("ok", 0)), "failed": int(counts.get("failed", 0)),
               "speakers": int(raw["speaker"].nunique())}  # fmt: skip
    if len(names) > 1:
        summary["sources"] = {
            name: {"intervals": int((group := raw[raw["source"] == name]).shape[0]),
                   "ok": int((group["status"] == "ok").sum()),
                   "speakers": int(group["speaker"].nunique())}
            for name in names
        }  # fmt: skip
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
