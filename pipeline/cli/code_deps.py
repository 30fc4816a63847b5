"""``python -m pipeline.cli.code_deps --check | --write``: the code part of each stage's
``deps`` in ``dvc.yaml`` against the import closure of its command
(:mod:`pipeline.orchestration.code_deps`)."""

from __future__ import annotations

import argparse
import sys

from pipeline.orchestration.code_deps import mismatches, write_code_deps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the code deps of dvc.yaml's stages")
    parser.add_argument("--root", default=".")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="list stages whose deps disagree")
    action.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    args = parser.parse_args(argv)
    if args.write:
        write_code_deps(args.root)
    problems = mismatches(args.root)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
