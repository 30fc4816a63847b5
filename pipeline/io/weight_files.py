"""Which safetensors file of a pretrained folder to read.

Hubs ship weights as ``<stem>.safetensors`` or, often only, as the half-precision variant
``<stem>.fp16.safetensors`` (Stable Video Diffusion's UNet, VAE and image encoder). Loaders pass
:func:`safetensors_variant`'s answer as diffusers' / transformers' ``variant`` and load in fp32.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import MissingInputError


def safetensors_variant(folder: str | Path, file: str, required: bool = True) -> str | None:
    """None when ``folder/file`` exists, ``"fp16"`` when only ``<stem>.fp16.safetensors`` does.

    When neither is there: with ``required``, :class:`~pipeline.errors.MissingInputError`
    naming the folder (pickled ``.bin`` weights refused on purpose); without, None (the library
    then reads what the folder has).
    """
    folder = Path(folder)
    if (folder / file).is_file():
        return None
    stem, suffix = file.rsplit(".", 1)
    if (folder / f"{stem}.fp16.{suffix}").is_file():
        return "fp16"
    if not required:
        return None
    raise MissingInputError(f"{folder}: no {file} or {stem}.fp16.{suffix} (safetensors weights "
                            "required)")  # fmt: skip
