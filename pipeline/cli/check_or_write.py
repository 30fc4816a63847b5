"""The arguments of the repository's generated-file checks (``--root``, ``--check`` |
``--write``), shared by ``pipeline.cli.code_deps`` and ``pipeline.cli.docs_tables``."""

from __future__ import annotations

import argparse


def check_or_write_arguments(description: str, check_help: str, write_help: str,
                             argv: list[str] | None = None) -> argparse.Namespace:  # fmt: skip
    """Parse ``--root DIR`` (default ``.``) and exactly one of ``--check`` / ``--write``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=".")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help=check_help)
    action.add_argument("--write", action="store_true", help=write_help)
    return parser.parse_args(argv)
