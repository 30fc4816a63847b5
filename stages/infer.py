"""Stage ``infer``: generate every test clip from its first frame and its audio, ``--mode``
``none``, ``sg`` or ``dg`` (Section 4.2, Algorithm 1).

Per clip: an mp4 with the clip's audio, the latents (``.npy``, what the metrics decode) and the
time cost per segment. Every mode uses the same per-clip noise, so the modes compare pairwise.
A clip that cannot be generated gets a row with the reason; the stage then exits non-zero.

``--shard i/n`` generates only the test clips ``i, i + n, ...`` into ``<out>/shards/`` (a
worker's part; each clip's noise depends on the clip only, so the split changes no pixel; a
shard already complete for the same plan is kept), and ``--merge n`` assembles
``index.parquet`` from the ``n`` shards of this plan. Without either, one process does shard
0/1 and the merge. The work is :mod:`pipeline.inference.generate`'s.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pipeline.builders.inference import animator_settings
from pipeline.config import Params
from pipeline.inference.generate import (
    InferPlan,
    ModelFolders,
    generate_shard,
    load_test_records,
    merge_generated,
    reference_face_boxes,
)
from pipeline.io.outputs import write_json
from pipeline.io.timings import write_timings
from pipeline.models.device import resolve_device
from stages.common import (
    add_shard_arguments,
    add_timings_argument,
    code_digest,
    run_stage,
    shards_to_merge,
    stage_parser,
    timings_path,
)

log = logging.getLogger("paha.infer")


def main(args: argparse.Namespace, params: Params) -> None:
    mode, infer = args.mode, params.infer
    records = load_test_records(args.clips, args.features, infer.max_clips)
    plan = InferPlan(records, reference_face_boxes(args.features, records), mode, infer.seed,
                     infer.lossless_video)  # fmt: skip
    settings = animator_settings(params)
    device = resolve_device(params.runtime.device)
    models = ModelFolders.under(args.models, mode)
    fingerprint = plan.fingerprint(settings, models.digests(), code_digest("stages.infer"))

    def write_shard(shard: int, count: int) -> None:
        generate_shard(plan, lambda: models.load(settings, device), args.out, shard, count,
                       fingerprint)  # fmt: skip

    started = time.perf_counter()
    shards = shards_to_merge(args, write_shard)
    if shards is None:
        return  # one worker's part; `--merge n` assembles the index
    table = merge_generated(plan, args.out, shards, fingerprint)
    ok = table[table["status"] == "ok"]
    segments = int(ok["segments"].sum())
    summary = {"mode": mode, "clips": len(table), "failed": int((table["status"] != "ok").sum()),
               "frames": int(ok["n_frames"].sum()), "segments": segments,
               "steps": infer.steps, "guidance_rate": infer.guidance_rate,
               "shards": shards}  # fmt: skip
    write_json(summary, args.metrics)
    # Sampling seconds from the clips' rows (whichever shard made them), and this run's wall time.
    sampling = float(ok["seconds"].sum())
    write_timings(timings_path(args), seconds_per_segment=sampling / max(1, segments),
                  seconds_this_run=time.perf_counter() - started)  # fmt: skip
    log.info("infer %s (plan %s): %s", mode, fingerprint, summary)
    if summary["failed"]:
        raise RuntimeError(
            f"infer {mode}: {summary['failed']} clips failed (see {args.out}/index.parquet)"
        )


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("none", "sg", "dg"), required=True)
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--models", default="data/models")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    add_timings_argument(p)
    add_shard_arguments(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
