"""UniVDM training steps per second and peak memory for a given size and precision.

Times the diffusion training step (UNet forward with PAR-weighted loss, backward, AdamW) on
random latents, without the VAE, after a few warm-up steps:

    python -m benchmarks.train_step --profile sample                         # params.yaml sizes
    python -m benchmarks.train_step --profile paper --size 256 --frames 16 \\
        --precision bf16 --gradient-checkpointing --device cuda             # paper UNet on a GPU

``--profile`` picks the UNet widths from ``params.yaml`` (sample) or ``params/paper.yaml``.
Peak memory is CUDA's max allocated on a GPU and the process's max RSS on CPU.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from pipeline.config import load_params
from pipeline.models.univdm import UniVDM
from pipeline.training.losses import par_loss
from pipeline.training.univdm_trainer import univdm_config

PROFILES = {"sample": "params.yaml", "paper": "params/paper.yaml"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(profile: str, size: int, frames: int, vae_factor: int, audio_dim: int) -> UniVDM:
    """The profile's UniVDM (its block layout and parametrisation) at ``size`` x ``frames``,
    randomly initialised: a pretrained start only changes the values, not the step's cost."""
    params = load_params(PROFILES[profile]).train_univdm
    params = params.model_copy(update={"size": size, "frames": frames})
    # A learned image token instead of CLIP's: one projected token, no measurable cost.
    config = univdm_config(params, 25.0, 4, vae_factor, audio_dim, None)
    config.reference_gate = params.unet.pretrained is not None
    return UniVDM(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="sample")
    parser.add_argument("--size", type=int, default=None, help="frame side (default: profile's)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--vae-factor", type=int, default=None, help="default: 8 paper, 4 sample")
    parser.add_argument("--audio-dim", type=int, default=80)
    parser.add_argument("--precision", choices=DTYPES, default="fp32")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    params = load_params(PROFILES[args.profile]).train_univdm
    size, frames = args.size or params.size, args.frames or params.frames
    batch = args.batch or params.batch_size
    factor = args.vae_factor or (8 if args.profile == "paper" else 4)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    model = build(args.profile, size, frames, factor, args.audio_dim).to(device)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    h = size // factor
    latents = torch.randn(batch, frames, 4, h, h, device=device)
    reference = torch.randn(batch, 4, h, h, device=device)
    audio = torch.randn(batch, frames, model.config.window, args.audio_dim, device=device)
    weights = torch.rand(batch, frames, h, h, device=device) * 3 + 1
    dtype = DTYPES[args.precision]

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            timesteps = torch.randint(0, 1000, (batch,), device=device)
            pred = model(latents, timesteps, reference, audio).epsilon
        loss = par_loss(pred.float().transpose(1, 2), latents.transpose(1, 2), weights)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    elapsed = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"profile={args.profile} params={n_params:.1f}M size={size} frames={frames} "
          f"batch={batch} latent={h}x{h}x{frames + 1} precision={args.precision} "
          f"checkpointing={args.gradient_checkpointing} device={device}")  # fmt: skip
    print(f"steps/s {args.steps / elapsed:.3f}  s/step {elapsed / args.steps:.3f}  "
          f"peak memory {peak:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
