"""``python -m pipeline.cli.docs_tables --write | --check``: the docs' results tables from
``data/metrics/`` (:mod:`pipeline.evaluation.docs_tables`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.evaluation.docs_tables import DOCS, render, stale_blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the docs' results tables from data/metrics/")
    parser.add_argument("--root", default=".")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    action.add_argument("--write", action="store_true", help="regenerate every table")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.check:
        stale = stale_blocks(root)
        for line in stale:
            print(f"stale: {line} (run `python -m pipeline.cli.docs_tables --write`)")
        return 1 if stale else 0
    for doc in DOCS:
        path = root / doc
        path.write_text(render(path.read_text(encoding="utf-8"), root), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
