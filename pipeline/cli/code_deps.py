"""``python -m pipeline.cli.code_deps --check | --write``: the code part of each stage's
``deps`` in ``dvc.yaml`` against the import closure of its command
(:mod:`pipeline.orchestration.code_deps`)."""

from __future__ import annotations

import sys

from pipeline.cli.check_or_write import check_or_write_arguments
from pipeline.orchestration.code_deps import mismatches, write_code_deps


def main(argv: list[str] | None = None) -> int:
    args = check_or_write_arguments("the code deps of dvc.yaml's stages",
                                    "list stages whose deps disagree",
                                    "rewrite the code deps in dvc.yaml", argv)  # fmt: skip
    if args.write:
        write_code_deps(args.root)
    problems = mismatches(args.root)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
