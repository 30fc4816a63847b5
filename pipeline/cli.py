"""The ``paha`` command: run a pipeline stage or check a params file.

paha stage cut            # same as `python -m stages.cut` (what `dvc repro` calls)
paha params-check [FILE]  # validate params.yaml (or FILE) and print the effective values
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pipeline.config import ConfigError, load_params

STAGES = ("corpus", "cut", "curate", "extract")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paha", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stage = commands.add_parser("stage", help="run one pipeline stage")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the stage")
    check = commands.add_parser("params-check", help="validate a params file")
    check.add_argument("file", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)

    if args.command == "stage":
        module = importlib.import_module(f"stages.{args.name}")
        return module.run_stage(module.main, module.parser(), args.args)
    try:
        params = load_params(args.file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(params.model_dump(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
