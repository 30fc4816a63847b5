"""Tiny pretrained models saved in the formats of the public weights the paper profile loads.

Random weights, real layouts: a diffusers ``UNetSpatioTemporalConditionModel`` folder (SVD's
``unet/``), an ``AutoencoderKLTemporalDecoder`` folder (SVD's ``vae/``), a transformers
``CLIPVisionModelWithProjection`` folder (CLIP-H's vision tower) and ``Wav2Vec2Model`` folder,
a plain state dict of the official SyncNet architecture (``syncnet_v2.model``) and a TorchScript
module with the call of StyleGAN-V's ``i3d_torchscript.pt``. Each writer returns what it wrote.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.models.univdm import UniVDMConfig


def _jitter(module: nn.Module, seed: int) -> nn.Module:
    """Small random values on every weight (zero-initialised output layers included), so that
    a loader that drops a tensor is visible in the outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return module.eval()


def svd_unet(folder: Path, config: UniVDMConfig) -> Path:
    """SVD's UNet class with the block layout of ``config`` (``[noisy | image latent]`` input)."""
    from diffusers import UNetSpatioTemporalConditionModel

    kwargs = config.unet_kwargs() | {"in_channels": 2 * config.latent_channels}
    torch.manual_seed(0)
    _jitter(UNetSpatioTemporalConditionModel(**kwargs), 1).save_pretrained(folder)
    return folder


def temporal_vae(folder: Path, levels: int = 3, latent_channels: int = 4) -> Path:
    """SVD's VAE class (temporal decoder); ``2 ** (levels - 1)`` pixels per latent cell."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32,) * levels, down_block_types=("DownEncoderBlock2D",) * levels,
        layers_per_block=1, latent_channels=latent_channels, sample_size=64,
    )  # fmt: skip
    vae.eval().save_pretrained(folder, safe_serialization=True)
    return folder


def clip_vision(folder: Path, projection_dim: int, image_size: int = 32) -> Path:
    """CLIP's vision tower with its projection (``CLIPVisionModelWithProjection``)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=image_size, patch_size=8,
                              projection_dim=projection_dim)  # fmt: skip
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def wav2vec2(folder: Path, hidden_size: int = 16, layers: int = 3) -> Path:
    """``Wav2Vec2Model`` (wav2vec2-base's class, 320 samples a feature frame as the real one)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 64), conv_kernel=(10, 64),
        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def syncnet_v2(path: Path) -> Path:
    """A state dict of the official SyncNet architecture, as ``syncnet_v2.model`` holds one."""
    from pipeline.models.syncnet import SyncNet

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(SyncNet.official().state_dict(), path)
    return path


class FakeI3D(nn.Module):
    """The call of StyleGAN-V's I3D detector, ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 400)``
    features; a small 3D convolution and a linear map stand in for the network."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, stride=2, padding=1)
        self.head = nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:  # fmt: skip
        if rescale or resize or not return_features:
            raise ValueError("expected rescale=False, resize=False, return_features=True")
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def i3d_torchscript(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TorchScript is deprecated; the real detector is one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(_jitter(FakeI3D(), 2)).save(str(path))
    return path
