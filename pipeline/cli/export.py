"""``paha export --out DIR``: the curated corpus as a dataset folder
(:mod:`pipeline.curation.export`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipeline.config import load_params
from pipeline.curation.export import clip_hours, export_dataset
from pipeline.errors import InputError


def export_command(args: Any) -> int:
    """``paha export --out DIR``: print the folder and its counts; bad input is one line."""
    try:
        params = load_params(Path(args.root) / args.params)
        release = export_dataset(params, args.root, args.out)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{release.out}: {len(release.exported)} clips exported "
          f"({clip_hours(release.exported):.4f} h), {len(release.rejected)} not exported "
          f"(rejected.csv); datasheet: {release.out / 'README.md'}")  # fmt: skip
    return 0
