"""``paha flow``: the DVC DAG (or one stage) as a Prefect flow
(:mod:`pipeline.orchestration.flows`)."""

from __future__ import annotations

import sys
import time
from typing import Any

from pipeline.orchestration.flows import StageFailed, paha_dag, paha_stage, timeline


def flow_command(args: Any) -> int:
    """``paha flow``: run the DAG (or one stage) as a Prefect flow; print what ran and when."""
    if args.dask:
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(address=args.dask)
    elif args.workers > 1:
        from prefect.task_runners import ProcessPoolTaskRunner

        runner = ProcessPoolTaskRunner(max_workers=args.workers)
    else:
        from prefect.task_runners import ThreadPoolTaskRunner

        runner = ThreadPoolTaskRunner(max_workers=1)
    options = {"root": args.root, "shards": args.shards, "gpu_slots": args.gpu_slots,
               "devices": args.devices.split(",") if args.devices else None,
               "storage": args.storage, "commit": not args.no_commit,
               "push": getattr(args, "push", False)}  # fmt: skip
    if args.pool_deployment:
        options["pool_deployment"] = args.pool_deployment
    started = time.perf_counter()
    try:
        if args.stage:
            report = paha_stage.with_options(task_runner=runner)(stage=args.stage, **options)
        else:
            report = paha_dag.with_options(task_runner=runner)(
                targets=args.targets or None, **options
            )
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    computed = [n for n, r in report["stages"].items() if r["state"] == "computed"]
    print(timeline(report))
    cached = len(report["stages"]) - len(computed)
    wall = time.perf_counter() - started
    print(f"stages computed: {len(computed)} {computed}; cached: {cached}; wall {wall:.1f} s")
    return 0
