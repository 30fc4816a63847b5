"""``python -m pipeline.cli.docs_tables --write | --check``: the docs' results tables from
``data/metrics/`` (:mod:`pipeline.evaluation.docs_tables`)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli.check_or_write import check_or_write_arguments
from pipeline.evaluation.docs_tables import DOCS, render, stale_blocks


def main(argv: list[str] | None = None) -> int:
    args = check_or_write_arguments("the docs' results tables from data/metrics/",
                                    "exit 1 if a table is stale", "regenerate every table",
                                    argv)  # fmt: skip
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
