"""``paha ablate``: Table 3's ablation grid with seeds (:mod:`pipeline.orchestration.ablation`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.orchestration.ablation.grid import VARIANTS
from pipeline.orchestration.ablation.report import markdown_tables
from pipeline.orchestration.ablation.runner import AblationRunFailed, run_ablation


def ablate_command(args: Any) -> int:
    """``paha ablate``: run the grid, print where the results are and the verdicts."""
    repo = Path(args.repo)
    out = Path(args.out) if args.out else repo / "data/metrics/ablation.json"
    html = Path(args.html) if args.html else out.with_suffix(".html")
    workdir = Path(args.workdir) if args.workdir else repo / ".dvc/tmp/ablation"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        document = run_ablation(repo, args.variants or list(VARIANTS), args.seeds, workdir, out,
                                html)  # fmt: skip
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AblationRunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown_tables(document))
    print(f"wrote {out} and {html} ({len(document['cells'])} cells)")
    return 0
