"""Seconds per generated segment for unguided, SG and DG sampling (the paper's Table 2 layout).

For each guidance rate (0, 0.25, 0.5, 0.75, 1) it times one segment of ``frames`` frames with
``steps`` DDIM steps in each mode, after a warm-up, and prints the ratios SG/none and DG/none
next to what the added network evaluations predict:

- SG adds, per guided step, two classifier forward + backward passes;
- DG adds the same, and its UNet call holds three latents instead of one.

So ``predicted = 1 + g * (2 c + (u3 - u) [DG]) / (N u)`` with ``g`` guided steps of ``N``,
``u`` / ``u3`` the UNet call on one / three latents and ``c`` one classifier gradient, each
timed on its own. The networks have random weights (speed does not depend on them)::

    python -m benchmarks.infer                                   # sample profile, CPU
    python -m benchmarks.infer --profile paper --size 256 --frames 16 --steps 30 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.train_step import PROFILES, build
from pipeline.builders.schedules import training_scheduler
from pipeline.config import load_params
from pipeline.data.face_boxes import face_masks
from pipeline.inference.guidance import Classifiers, GuidanceWeights, energy_gradient
from pipeline.inference.sampling import ddim_sample
from pipeline.models.classifier import SyncClassifier

RATES = (0.0, 0.25, 0.5, 0.75, 1.0)


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (CUDA synchronised)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="sample")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (profile's infer)")
    parser.add_argument("--vae-factor", type=int, default=None, help="default: 8 paper, 4 sample")
    parser.add_argument("--audio-dim", type=int, default=80)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params(PROFILES[args.profile])
    size = args.size or params.train_univdm.size
    frames = args.frames or params.train_univdm.frames
    steps = args.steps or params.infer.steps
    factor = args.vae_factor or (8 if args.profile == "paper" else 4)
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = build(args.profile, size, frames, factor, args.audio_dim).to(device).eval()
    settings = params.train_classifier.face
    face, nonface = (
        SyncClassifier.from_univdm(model, width=settings.width, layers=settings.layers,
                                   heads=settings.heads, max_frames=max(frames, 8))
        .to(device).eval()
        for _ in range(2)
    )  # fmt: skip
    config, scheduler = (
        model.config,
        training_scheduler(params.train_univdm),
    )
    latent = config.latent_size
    reference = torch.randn(1, config.latent_channels, latent, latent, device=device)
    audio = torch.randn(1, frames, config.window, args.audio_dim, device=device)
    noise = torch.randn(1, frames, config.latent_channels, latent, latent, device=device)
    mask = face_masks([[0.3, 0.05, 0.7, 0.45]], latent).to(device)
    classifiers = Classifiers(face, nonface, mask, torch.randn(1, frames, args.audio_dim,
                                                               device=device))  # fmt: skip

    def segment(mode: str, rate: float) -> None:
        ddim_sample(
            model,
            scheduler,
            reference,
            audio,
            steps,
            initial_noise=noise,
            guidance=GuidanceWeights(mode=mode, rate=rate),
            classifiers=classifiers,
        )

    segment("dg", 1.0)  # warm-up
    t = torch.tensor(500, device=device)
    with torch.no_grad():
        unet_1 = timed(lambda: model(noise, t, reference, audio), args.repeats * 3, device)
        triple = (noise.repeat(3, 1, 1, 1, 1), t, reference.repeat(3, 1, 1, 1),
                  audio.repeat(3, 1, 1, 1))  # fmt: skip
        unet_3 = timed(lambda: model(*triple), args.repeats * 3, device)
    gradient = timed(lambda: energy_gradient(face, noise, t, classifiers.audio, mask),
                     args.repeats * 3, device)  # fmt: skip
    print(f"profile {args.profile}: {size}x{size}, {frames} frames/segment, {steps} DDIM steps, "
          f"{device}; UNet {unet_1 * 1e3:.1f} ms (x3 batch {unet_3 * 1e3:.1f} ms), "
          f"classifier gradient {gradient * 1e3:.1f} ms")  # fmt: skip
    print(f"{'rate':>5} {'none s':>8} {'SG s':>8} {'DG s':>8} {'SG/none':>8} {'pred':>6} "
          f"{'DG/none':>8} {'pred':>6}")  # fmt: skip
    for rate in RATES:
        seconds = {mode: timed(lambda m=mode, r=rate: segment(m, r), args.repeats, device)
                   for mode in ("none", "sg", "dg")}  # fmt: skip
        guided = GuidanceWeights(mode="sg", rate=rate).guided_steps(steps)
        base = steps * unet_1
        pred_sg = 1 + guided * 2 * gradient / base
        pred_dg = pred_sg + guided * (unet_3 - unet_1) / base
        print(f"{rate:>5.2f} {seconds['none']:>8.3f} {seconds['sg']:>8.3f} {seconds['dg']:>8.3f} "
              f"{seconds['sg'] / seconds['none']:>8.2f} {pred_sg:>6.2f} "
              f"{seconds['dg'] / seconds['none']:>8.2f} {pred_dg:>6.2f}")  # fmt: skip
    print("paper (Table 2, rate 0.5): SG/none 1.15, DG/none 1.32")


if __name__ == "__main__":
    main()
