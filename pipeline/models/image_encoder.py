"""CLIP image embedding of the reference image (Appendix B.2.1: the CLIP-Huge vision encoder of
Stable Diffusion 2.1), loaded from a local folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import MissingInputError
from pipeline.io.weight_files import safetensors_variant

# CLIP's preprocessing statistics (the same for every OpenAI/OpenCLIP ViT release).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(nn.Module):
    """Frozen ``CLIPVisionModelWithProjection``: images in [-1, 1] -> ``(B, projection_dim)``.

    Args:
        path: local transformers model folder (``config.json`` + weights).
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        folder = Path(path)
        if not (folder / "config.json").exists():
            raise MissingInputError(f"{folder}: no CLIP vision model here (config.json missing)")
        # fp32 whatever the file holds (SVD ships model.fp16.safetensors only).
        self.model = CLIPVisionModelWithProjection.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32,
            variant=safetensors_variant(folder, "model.safetensors", required=False),
        )  # fmt: skip
        self.model.requires_grad_(False).eval()
        self.image_size = int(self.model.config.image_size)
        self.dim = int(self.model.config.projection_dim)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] (any device) -> image embeddings ``(B, projection_dim)``
        on the encoder's device."""
        pixels = (images.to(self.mean.device).float() + 1) / 2
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bicubic",
                               align_corners=False).clamp(0, 1)  # fmt: skip
        pixels = (pixels - self.mean) / self.std
        return self.model(pixel_values=pixels.to(self.model.dtype)).image_embeds
