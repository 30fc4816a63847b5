"""Starting UniVDM from a pretrained Stable Video Diffusion UNet (Appendix B.1).

"UniVDM is initialized from a pretrained video diffusion model [2]". [2] is Video LDM, whose
weights were never released; Stable Video Diffusion (same authors, same latent video UNet family)
is the public model of that kind and the one diffusers' ``UNetSpatioTemporalConditionModel``
implements. :func:`load_pretrained_unet` copies a local diffusers folder of SVD's UNet (e.g. the
``unet/`` folder of ``stable-video-diffusion-img2vid``) into a UniVDM built with the same layout:

- every pretrained tensor is copied into the key of the same name, strictly: a pretrained key
  the UniVDM lacks, or a shape that differs, is an error;
- ``conv_in.weight`` is *replaced*: SVD has 8 input channels ``[noisy latent | image latent]``,
  UniVDM 9 ``[noisy latent | condition latent | condition mask]``; the first 8 are copied and the
  mask channel's weights are zero, so the mask does nothing until trained;
- the new parts start as no-ops: the audio cross-attention's output projection is zero
  (:mod:`pipeline.models.audio_attention`) and the reference attention's gate is zero
  (:mod:`pipeline.models.reference_attention`);
- the CLIP image embedding keeps SVD's meaning: SVD feeds the 1024-wide CLIP ViT-H embedding
  straight in as its one context token, so UniVDM's image projection starts as the identity;
  the time ids are SVD's ``[fps - 1, motion bucket 127, noise augmentation]``
  (:func:`pipeline.models.univdm.added_time_ids`); the condition channels are multiplied by
  ``condition_scale`` (SVD's image latents are the VAE's unscaled latents: ``1 / 0.18215``).

With the new parts at these values, UniVDM's UNet computes exactly what the SVD UNet computes on
the same ``(t + 1)``-frame input (tested).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.errors import InputError, MissingInputError

UNET_CLASS = "UNetSpatioTemporalConditionModel"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
# Config fields that decide the weights' shapes; the folder must agree with the params on each.
ARCHITECTURE_FIELDS = (
    "block_out_channels", "down_block_types", "up_block_types", "layers_per_block",
    "cross_attention_dim", "num_attention_heads", "addition_time_embed_dim",
    "projection_class_embeddings_input_dim", "out_channels",
)  # fmt: skip
REPLACED = {"conv_in.weight": "input channel 9 (condition mask) added, zero-initialised"}


class PretrainedMismatchError(InputError):
    """A pretrained folder that does not fit the UniVDM the params describe."""


@dataclass
class PretrainedLoad:
    """What :func:`load_pretrained_unet` did, key by key (``unet.`` keys of the UniVDM)."""

    folder: Path
    copied: list[str] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)  # UniVDM keys with no pretrained counterpart


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise MissingInputError(
        f"{folder}: no pretrained UNet weights here (expected one of {', '.join(WEIGHT_FILES)})"
    )


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise MissingInputError(f"{folder}: no pretrained UNet here (config.json missing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedMismatchError(f"{path}: not JSON ({err})") from None


def _as_list(value):
    if isinstance(value, list | tuple):
        return [_as_list(v) for v in value]
    return value


def check_architecture(folder: Path, pretrained: dict, wanted: dict) -> None:
    """Raise one :class:`PretrainedMismatchError` naming every field that differs."""
    problems = []
    name = pretrained.get("_class_name")
    if name != UNET_CLASS:
        problems.append(f"architecture {name!r}, not {UNET_CLASS}")
    for key in ARCHITECTURE_FIELDS:
        have, want = _as_list(pretrained.get(key)), _as_list(wanted[key])
        if key == "num_attention_heads" and isinstance(have, int):
            have = [have] * len(want)
        if have != want:
            problems.append(f"{key} {have} (params: {want})")
    layers = pretrained.get("transformer_layers_per_block", 1)
    if _as_list(layers) not in (1, [1] * len(wanted["block_out_channels"])):
        problems.append(f"transformer_layers_per_block {layers} (UniVDM uses 1)")
    in_channels = pretrained.get("in_channels")
    if in_channels != wanted["in_channels"] - 1:
        problems.append(
            f"in_channels {in_channels} (UniVDM has {wanted['in_channels']}: "
            f"expects a {wanted['in_channels'] - 1}-channel [noisy | image latent] UNet)"
        )
    if problems:
        raise PretrainedMismatchError(f"{folder}: does not fit train_univdm.unet: "
                                      + "; ".join(problems))  # fmt: skip


def load_pretrained_unet(model, folder: str | os.PathLike) -> PretrainedLoad:
    """Copy the SVD UNet in ``folder`` into ``model`` (a :class:`UniVDM`), strictly.

    Returns:
        :class:`PretrainedLoad` listing every copied, replaced and new key.

    Raises:
        MissingInputError: no ``config.json`` or no weights file in ``folder``.
        PretrainedMismatchError: another architecture, other block layout or widths, another
            number of input channels, or weights whose keys/shapes do not match.
        ValueError: ``model`` was not built for a pretrained start (``reference_gate`` off).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not model.config.reference_gate:
        raise ValueError("a pretrained start needs UniVDMConfig.reference_gate=True, so that the "
                         "reference attention starts as the pretrained self-attention")  # fmt: skip
    check_architecture(folder, _read_config(folder), model.config.unet_kwargs())
    source = load_file(str(_weights_file(folder)))
    target = model.unet.state_dict()
    report = PretrainedLoad(folder=folder)
    unused = sorted(set(source) - set(target))
    bad_shapes = [
        f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}"
        for k in source
        if k in target and k not in REPLACED and source[k].shape != target[k].shape
    ]
    missing = sorted(k for k in set(target) - set(source) if ".processor." not in k)
    if unused or bad_shapes or missing:
        parts = []
        for label, keys in (("unused pretrained keys", unused), ("shape mismatches", bad_shapes),
                            ("UniVDM keys the folder lacks", missing)):  # fmt: skip
            if keys:
                shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise PretrainedMismatchError(f"{folder}: weights do not fit UniVDM: " + "; ".join(parts))
    state = {}
    for key, tensor in source.items():
        if key == "conv_in.weight":
            weight = torch.zeros_like(target[key])
            weight[:, : tensor.shape[1]] = tensor.to(weight.dtype)
            state[key] = weight
            report.replaced[key] = REPLACED[key]
        else:
            state[key] = tensor.to(target[key].dtype)
            report.copied.append(key)
    report.new = sorted(set(target) - set(source))
    state.update({k: target[k] for k in report.new})
    model.unet.load_state_dict(state, strict=True)
    if model.image_proj is not None:
        width = model.config.cross_attention_dim
        if model.image_proj.in_features == width:
            with torch.no_grad():  # SVD's CLIP embedding is its context token as it is
                model.image_proj.weight.copy_(torch.eye(width))
                model.image_proj.bias.zero_()
    return report


__all__ = ["PretrainedLoad", "PretrainedMismatchError", "check_architecture",
           "load_pretrained_unet"]  # fmt: skip
