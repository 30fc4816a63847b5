"""Compute plan of the paper profile, from shapes alone: FLOPs and GPU-hours of each GPU stage.

    python -m benchmarks.compute_plan --profile paper [--gpus 8] [--peak-tflops 989] [--mfu 0.3 0.5]

The profile's UniVDM and PCE classifier are built on PyTorch's ``meta`` device (no GPU, no
weights, as :mod:`benchmarks.memory_plan` does) and ``torch.utils.flop_counter.FlopCounterMode``
counts the matrix-multiply and convolution FLOPs (attention included) of one forward pass, and
of a forward and backward pass, of one window. From those:

- **train_univdm**: forward + backward per window, plus one more forward with gradient
  checkpointing (the recomputation), times the global batch and the steps;
- **negatives**: ``max_windows`` generated videos, their length drawn from
  ``negatives.lengths`` (mean taken), chained in windows of ``frames`` frames sharing one frame
  (:func:`pipeline.data.segments.segment_starts`), ``ddim_steps`` forward passes a window;
- **train_classifier** (each of the two): forward + backward of the classifier on windows of
  the mean negative length, ``batch_size`` windows a step;
- **infer** per test segment and mode: ``infer.steps`` UniVDM forwards; SG adds, for the guided
  steps, a forward + backward of each classifier (the gradient of Eq. 8-9); DG also evaluates
  the solver at the two intermediate latents (two more UNet forwards, Eq. 12).

Hours are FLOPs over ``gpus x peak x MFU``: the peak is the card's dense bf16 rate (989 TFLOP/s
for an H800 / H100 SXM), the model FLOPs utilisation an assumption given as a range (0.3-0.5 is
usual for large diffusion UNets). Elementwise work, data loading, the VAE and the evaluation are
not counted: read the figures as a lower-bound plan to check on the cards, not a measurement.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.memory_plan import (
    PROFILES,
    WAV2VEC2_BASE_DIM,
    training_inputs,
    univdm_on_meta,
)
from pipeline.config import Params, load_params
from pipeline.data.segments import segment_starts
from pipeline.io.outputs import write_json

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def counted_flops(run) -> int:
    """FLOPs that ``run()`` executes (FlopCounterMode; meta tensors are fine)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def univdm_window_flops(model, config, dtype: torch.dtype) -> dict[str, int]:
    """``forward`` and ``forward_backward`` FLOPs of a meta-device UniVDM (``config``) on one
    training window."""
    inputs = training_inputs(config, 1, dtype)

    def backward():
        model(**inputs).epsilon.float().sum().backward()

    # The real attention (not memory_plan's shape-only stand-in): its FLOPs are counted.
    forward = counted_flops(lambda: model(**inputs))
    return {
        "forward": forward,
        "forward_backward": counted_flops(backward),
        "frames": config.frames,
    }


def classifier_window_flops(params: Params, kind: str, frames: int, dtype: torch.dtype,
                            config) -> dict[str, int]:  # fmt: skip
    """``forward`` and ``forward_backward`` FLOPs of a PCE classifier on a ``frames`` window;
    ``config``: the profile's :class:`~pipeline.models.univdm.UniVDMConfig`."""
    from pipeline.models.classifier import SyncClassifier, SyncClassifierConfig

    settings = getattr(params.train_classifier, kind)
    with torch.device("meta"):
        model = SyncClassifier(SyncClassifierConfig(
            univdm=config, width=settings.width, layers=settings.layers, heads=settings.heads,
            max_frames=max(frames, 1), crop_size=settings.crop_size,
            sync_channels=settings.sync_channels, sync_grid=settings.sync_grid,
        ))  # fmt: skip
    model = model.to(device="meta", dtype=dtype).train()
    shape = (1, frames, config.latent_channels, config.latent_size, config.latent_size)
    with torch.device("meta"):
        z = torch.empty(shape, dtype=dtype, requires_grad=True)
        t = torch.zeros(1, dtype=torch.long)
        audio = torch.empty(1, frames, config.audio_dim, dtype=dtype)

    def backward():
        model(z, t, audio).float().sum().backward()

    return {"forward": counted_flops(lambda: model(z, t, audio)),
            "forward_backward": counted_flops(backward)}  # fmt: skip


def compute_plan(params: Params, gpus: int, peak_tflops: float,
                 mfu: tuple[float, float]) -> dict:  # fmt: skip
    """FLOPs of each GPU stage of ``params`` and its hours on ``gpus`` cards (module docstring)."""
    train, negatives, infer = params.train_univdm, params.negatives, params.infer
    dtype = DTYPES[train.precision]
    model, config = univdm_on_meta(params, WAV2VEC2_BASE_DIM, dtype)  # built once
    unet = univdm_window_flops(model, config, dtype)
    window = unet["frames"]
    per_window = unet["forward_backward"] + (unet["forward"] if train.gradient_checkpointing else 0)
    mean_length = sum(negatives.lengths) / len(negatives.lengths)
    windows_per_video = sum(len(segment_starts(n, window)) for n in negatives.lengths) / len(
        negatives.lengths
    )  # fmt: skip
    stages = {
        "train_univdm": per_window * train.batch_size * train.steps,
        "negatives": negatives.max_windows * windows_per_video * negatives.ddim_steps
        * unet["forward"],
    }  # fmt: skip
    classifiers = {}
    for kind in ("face", "nonface"):
        figures = classifier_window_flops(params, kind, int(round(mean_length)), dtype, config)
        classifiers[kind] = figures
        settings = getattr(params.train_classifier, kind)
        stages[f"train_classifier@{kind}"] = (figures["forward_backward"] * settings.batch_size
                                              * settings.steps)  # fmt: skip
    # One test segment of `window` frames: the classifiers read it at the window's length.
    guidance = {k: classifier_window_flops(params, k, window, dtype, config)["forward_backward"]
                for k in ("face", "nonface")}  # fmt: skip
    guided = min(int(round(infer.guidance_rate * infer.steps)), infer.steps - 1)
    segment = {
        "none": infer.steps * unet["forward"],
        "sg": infer.steps * unet["forward"] + guided * sum(guidance.values()),
        "dg": infer.steps * unet["forward"] + guided * (sum(guidance.values())
                                                         + 2 * unet["forward"]),
    }  # fmt: skip

    def hours(flops: float) -> list[float]:
        return [round(flops / (gpus * peak_tflops * 1e12 * u) / 3600, 2) for u in mfu]

    return {
        "gpus": gpus,
        "peak_tflops": peak_tflops,
        "mfu": list(mfu),
        "precision": train.precision,
        "window_frames": window,
        "univdm_window_flops": {k: v for k, v in unet.items() if k != "frames"},
        "univdm_window_tflop": {k: round(v / 1e12, 2) for k, v in unet.items() if k != "frames"},
        "classifier_window_tflop": {
            k: {n: round(v / 1e12, 2) for n, v in f.items()} for k, f in classifiers.items()
        },  # fmt: skip
        "classifier_window_frames": int(round(mean_length)),
        "stages": {
            name: {"flops": int(flops), "pflop": round(flops / 1e15, 1), "hours": hours(flops)}
            for name, flops in stages.items()
        },  # fmt: skip
        "infer_segment": {
            mode: {
                "flops": int(flops),
                "tflop": round(flops / 1e12, 1),
                "seconds_one_gpu": [round(flops / (peak_tflops * 1e12 * u), 2) for u in mfu],
            }
            for mode, flops in segment.items()
        },  # fmt: skip
    }


def markdown_table(plan: dict) -> str:
    low, high = plan["mfu"]
    lines = [f"| stage | PFLOP | hours on {plan['gpus']} GPUs (MFU {high:g} - {low:g}) |",
             "|---|---|---|"]  # fmt: skip
    for name, figures in plan["stages"].items():
        fast, slow = figures["hours"][1], figures["hours"][0]
        lines.append(f"| {name} | {figures['pflop']:,.1f} | {fast:g} - {slow:g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", help="paper | sample | a params file")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 TFLOP/s of one card (H800 / H100 SXM: 989)")  # fmt: skip
    parser.add_argument("--mfu", type=float, nargs=2, default=(0.3, 0.5))
    parser.add_argument("--out", default=None, help="JSON of the plan")
    args = parser.parse_args(argv)
    params = load_params(PROFILES.get(args.profile, args.profile))
    plan = compute_plan(params, args.gpus, args.peak_tflops, tuple(args.mfu))
    unet = plan["univdm_window_tflop"]
    print(f"UniVDM, one {plan['window_frames']}-frame window: forward {unet['forward']} TFLOP, "
          f"forward + backward {unet['forward_backward']} TFLOP "
          f"({plan['precision']})\n")  # fmt: skip
    print(markdown_table(plan))
    print("\ninfer, one segment:", ", ".join(
        f"{m} {f['tflop']} TFLOP ({f['seconds_one_gpu'][1]:g}-{f['seconds_one_gpu'][0]:g} s on "
        "one GPU)" for m, f in plan["infer_segment"].items()))  # fmt: skip
    if args.out:
        write_json(plan, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
