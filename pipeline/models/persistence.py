"""Saving a network as a folder: its config as JSON beside its weights as safetensors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from torch import nn

from pipeline.errors import MissingInputError

WEIGHTS_NAME = "model.safetensors"

Model = TypeVar("Model", bound=nn.Module)


def save_folder(model: nn.Module, folder: str | os.PathLike, config_name: str,
                config_json: str) -> Path:  # fmt: skip
    """Write ``config_name`` (``config_json``) and ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config_name).write_text(config_json)
    save_model(model, str(folder / WEIGHTS_NAME))
    return folder


def load_folder(build: type[Model], config_from_json, folder: str | os.PathLike,
                config_name: str, weights: str = WEIGHTS_NAME) -> Model:  # fmt: skip
    """Rebuild ``build(config_from_json(text))`` from :func:`save_folder`'s folder, strictly."""
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / config_name).exists():
        raise MissingInputError(f"{folder}: no {build.__name__} here ({config_name} missing)")
    model = build(config_from_json((folder / config_name).read_text()))
    load_model(model, str(folder / weights), strict=True)
    return model
