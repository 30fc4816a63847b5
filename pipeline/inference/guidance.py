"""Sequential and Differential Guidance (Section 4.2, Eq. 8-12, Algorithm 1).

Notation: ``f`` is one deterministic DDIM step of UniVDM from timestep ``t`` (the solver
``f_theta``), ``D(z, a) = -log s(z, a)`` a classifier's energy, ``sigma_t = sqrt(1 - abar_t)``
the noise level of the latent being guided, ``M_f`` the face mask at latent resolution (the
reference image's dilated face box) and ``M_nf = 1 - M_f``. One ``M_f`` serves the whole video:
Algorithm 1 takes the face mask as an input given before sampling, and the generated video's
face is not known until it is generated (tracking it would mean decoding every guided step's
prediction); the dilation, a quarter of the box on each side, covers the head's motion around
the reference pose. Training windows use the union of their frames' boxes
(:func:`pipeline.data.face_boxes.window_face_box`).

For the latent ``z`` entering a guided step:

- Eq. 8: ``z_nf = z - lambda_nf * sigma_t * grad D_nf(z, a) * M_nf``
- Eq. 9: ``z_f  = z - lambda_f  * sigma_t * grad D_f(z_nf, a) * M_f`` (the face gradient is taken
  at the non-face-guided latent: the two guidances are sequential)
- Eq. 10: ``z* = z_f + z_nf - z``
- SG, Eq. 11: ``z_next = f(z*)``
- DG, Eq. 12 (``dg_form="differential"``, the default; see ``../shared/DESIGN.md``):
  ``z_next = f(z*) + lambda_diff * [(f(z_nf) - f(z*)) * M_f + (f(z_f) - f(z*)) * M_nf]``.
  Printed literally (``dg_form="literal"``), Eq. 12 adds ``lambda_diff * (f(z_nf) * M_f +
  f(z_f) * M_nf)``, which scales the whole latent by about ``1 + lambda_diff`` every step; the
  differential form compensates only the *change* each classifier made outside its own area.
  DG's three solver inputs ``z*, z_nf, z_f`` go through the UNet as one batch.

Each classifier reads the latent masked as in its training (the face classifier the face box
only, the non-face one the rest), so its gradient is zero outside its area before the mask of
Eq. 8-9 is applied. Guidance is applied to the latent entering ``round(rate * steps)`` DDIM steps
(paper: 15 of 30, ``rate = 0.5``): as in Algorithm 1, the first of them is the solver's output
``f(z_T)``, so steps 1 to 15 are guided and ``z_T`` itself is not.

Cost (``python -m benchmarks.infer`` times each part). Over an unguided step, a guided one adds
two classifier gradients (the encoder forward and backward to the latent, each on the order of
one UNet call on the whole latent) and, for DG, two more latents in the UNet call. A face
classifier with a ``crop_size`` encodes only its box; the weights are frozen while a gradient
runs (:func:`_input_gradient_only`). Because ``z_nf`` equals ``z`` on ``M_f``, the face
classifier's input ``z_nf * M_f`` is ``z * M_f`` exactly: the two gradients do not depend on each
other's result (a device may overlap them), though the code keeps Eq. 9's order.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

from pipeline.data.face_boxes import apply_region
from pipeline.models.classifier import SyncClassifier

Mode = Literal["none", "sg", "dg"]
MODES: tuple[str, ...] = ("none", "sg", "dg")


@dataclass(frozen=True)
class GuidanceWeights:
    """Guidance settings (paper Appendix B.4.2: 1, 0.1, 0.25, rate 0.5)."""

    mode: Mode = "none"
    lambda_nonface: float = 1.0
    lambda_face: float = 0.1
    lambda_diff: float = 0.25
    rate: float = 0.5
    dg_form: Literal["differential", "literal"] = "differential"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"guidance mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"guidance rate must be in [0, 1], got {self.rate}")

    def guided_steps(self, steps: int) -> int:
        """How many DDIM steps are guided: ``round(rate * steps)``, at most ``steps - 1``."""
        if self.mode == "none":
            return 0
        return min(int(round(self.rate * steps)), steps - 1)

    def guided_indices(self, steps: int) -> range:
        """Indices of the guided DDIM steps, Algorithm 1: the first solver step turns ``z_T``
        into ``z_{t_{N-1}}`` unguided, and guidance acts on the solver's outputs from there
        (steps ``1 ... guided_steps``). Pure noise ``z_T`` carries no motion for a classifier to
        judge. At ``rate = 1`` every step but the first is guided."""
        return range(1, self.guided_steps(steps) + 1)


@dataclass
class Classifiers:
    """The two sync classifiers and what they are evaluated with.

    Attributes:
        face, nonface: trained :class:`SyncClassifier` models (eval mode).
        face_mask: ``(B, h, w)`` ``M_f`` at latent resolution; ``M_nf = 1 - M_f``.
        audio: ``(B, L, A)`` clean per-frame audio features of the frames being generated.
    """

    face: SyncClassifier
    nonface: SyncClassifier
    face_mask: torch.Tensor
    audio: torch.Tensor


@contextlib.contextmanager
def _input_gradient_only(classifier: SyncClassifier):
    """The classifier's parameters stop requiring gradients for the duration (then restored).

    Guidance differentiates with respect to the latent only. ``torch.autograd.grad`` already
    skips the weight gradients, but while a weight requires grad the forward pass still saves the
    inputs of every linear and convolution for it: about 30 % of the saved activations of the
    sample profile's encoder (41.8 instead of 58.3 MiB saved). The gradient is unchanged.
    """
    flags = [(p, p.requires_grad) for p in classifier.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def energy_gradient(classifier: SyncClassifier, z: torch.Tensor, timestep: torch.Tensor,
                    audio: torch.Tensor, region: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``grad_z D(z * region, a)`` with ``D = -log s``, summed over the batch: ``z``'s shape.

    The classifier is told the region, so one with a ``crop_size`` encodes only its box
    (:func:`pipeline.models.classifier.crop_region`); the gradient is zero outside the region
    either way.

    Args:
        z: ``(B, L, C, h, w)`` latent at ``timestep``.
        region: ``(B, h, w)`` the classifier's input area (its training mask).
    """
    with torch.enable_grad(), _input_gradient_only(classifier):
        x = z.detach().float().requires_grad_(True)
        t = torch.as_tensor(timestep, device=z.device).reshape(-1).expand(len(z))
        logits = classifier(apply_region(x, region), t, audio, region=region)
        (grad,) = torch.autograd.grad(SyncClassifier.guidance_energy(logits).sum(), x)
    return grad.to(z.dtype)


@dataclass(frozen=True)
class GuidedLatents:
    """The latents one guidance step makes from ``z`` (each ``(B, L, C, h, w)``): ``nonface``
    after the non-face step (Eq. 8), ``face`` after the face step (Eq. 9) and ``combined``,
    ``z*`` of Eq. 10, the one SG continues from (DG also reads the other two, Eq. 12)."""

    combined: torch.Tensor
    nonface: torch.Tensor
    face: torch.Tensor


def guide(z: torch.Tensor, timestep: torch.Tensor, sigma: float, weights: GuidanceWeights,
          classifiers: Classifiers) -> GuidedLatents:  # fmt: skip
    """Eq. 8-10 for the latent ``z`` ``(B, L, C, h, w)`` at ``timestep``."""
    m_face = classifiers.face_mask[:, None, None].to(z)
    m_nonface = 1.0 - m_face
    region_f, region_nf = classifiers.face_mask, 1.0 - classifiers.face_mask
    grad_nf = energy_gradient(classifiers.nonface, z, timestep, classifiers.audio, region_nf)
    z_nf = z - weights.lambda_nonface * sigma * grad_nf * m_nonface  # Eq. 8
    grad_f = energy_gradient(classifiers.face, z_nf, timestep, classifiers.audio, region_f)
    z_f = z - weights.lambda_face * sigma * grad_f * m_face  # Eq. 9
    z_star = z_f + z_nf - z  # Eq. 10
    return GuidedLatents(combined=z_star, nonface=z_nf, face=z_f)


def differential_combine(
    f_star: torch.Tensor, f_nonface: torch.Tensor, f_face: torch.Tensor,
    face_mask: torch.Tensor, weights: GuidanceWeights,
) -> torch.Tensor:  # fmt: skip
    """DG's next latent from the three solver outputs (Eq. 12, see the module docstring).

    ``face_mask`` is ``(B, h, w)``; the latents ``(B, L, C, h, w)``.
    """
    m_face = face_mask[:, None, None].to(f_star)
    m_nonface = 1.0 - m_face
    if weights.dg_form == "literal":
        return f_star + weights.lambda_diff * (f_nonface * m_face + f_face * m_nonface)
    return f_star + weights.lambda_diff * ((f_nonface - f_star) * m_face
                                           + (f_face - f_star) * m_nonface)  # fmt: skip


__all__ = [
    "MODES", "Classifiers", "GuidanceWeights", "GuidedLatents", "differential_combine",
    "energy_gradient", "guide",
]  # fmt: skip
