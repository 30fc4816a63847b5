"""What a model was trained on, and whether a reference image looks like it.

A generator trained on the four rendered sample speakers turns a photo of a real person into a
coloured blur, silently. :func:`reference_check` measures how far the reference is from the
training domain with the model's own VAE: the PSNR of its round trip (encode, decode) at the
training size. Measured with the sample profile's VAE (``make repro``): the first frames of the
20 sample clips round-trip at 31.9-35.5 dB, a photograph of a person (scikit-image's astronaut
portrait) at 12.6 dB. The bar, 20 dB, lies between, and below what Stable Diffusion's VAE gives
real photographs (mid 20s), so the paper profile's model does not warn on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_PSNR_BAR_DB = 20.0


@dataclass(frozen=True)
class ReferenceCheck:
    """The VAE round trip of one reference: ``psnr_db`` against the bar ``bar_db``."""

    psnr_db: float
    bar_db: float = REFERENCE_PSNR_BAR_DB

    @property
    def in_domain(self) -> bool:
        return self.psnr_db >= self.bar_db

    def warning(self) -> str | None:
        """One line for the user when the reference is out of the training domain, else None."""
        if self.in_domain:
            return None
        return (f"the reference is far from what this model was trained on: its VAE round trip "
                f"gives {self.psnr_db:.1f} dB (training-like images give over {self.bar_db:.0f}"
                " dB); expect a blur, not the person. A real photo needs the paper profile's "
                "trained weights (docs/paper-configuration.md)")  # fmt: skip


def reference_check(vae, reference: np.ndarray,
                    bar_db: float = REFERENCE_PSNR_BAR_DB) -> ReferenceCheck:  # fmt: skip
    """Round-trip PSNR (dB, uint8) of ``reference`` ``(S, S, 3)`` uint8, the cropped reference
    at the training size, through ``vae``."""
    from pipeline.metrics.psnr import reconstruction_psnr

    return ReferenceCheck(reconstruction_psnr(vae, reference[None]), bar_db)


def training_summary(univdm_dir: str | os.PathLike,
                     curated: str | os.PathLike = "data/curated/clips.parquet") -> str:  # fmt: skip
    """One line: which UniVDM runs and what it was trained on (the train split of the curated
    table the pipeline trained it from, when that table is here)."""
    line = f"model: UniVDM {univdm_dir}"
    path = Path(curated)
    if not path.is_file():
        return f"{line} (its training data is not known here: {path} not found)"
    from pipeline.io import tables

    clips = tables.read_table(path, tables.CURATED)
    train = clips[clips["kept"] & (clips["split"] == "train")]
    speakers = sorted(train["speaker"].unique())
    shown = ", ".join(speakers[:6]) + (", ..." if len(speakers) > 6 else "")
    sources = ", ".join(sorted(train["source"].unique()))
    return (f"{line}, trained on the {len(train)} train clips of {len(speakers)} speakers "
            f"({shown}; source {sources}) in {path}")  # fmt: skip


__all__ = ["REFERENCE_PSNR_BAR_DB", "ReferenceCheck", "reference_check", "training_summary"]
