"""Time cost of unguided, SG and DG sampling in the paper's Table 2 layout, and where it goes.

TC (Table 2, Section 5.2) is the seconds to generate one segment: one window of ``frames``
frames, ``steps`` DDIM steps, at ``size x size`` (the paper: 256x256, 30 steps). Here it is the
DDIM sampling of the segment's latents, the part guidance changes; decoding them adds the same
seconds to every mode, so the ratios below are upper bounds of end-to-end ratios. The networks
have random weights (speed does not depend on them)::

    python -m benchmarks.infer                                  # sample profile, CPU
    python -m benchmarks.infer --profile paper --size 256 --steps 30 --precision bf16   # GPU
    python -m benchmarks.infer --size 32 --frames 4 --steps 2 --repeats 1 --rates 0.5  # smoke

1. **Per call.** The network evaluations a step is made of, timed interleaved: the UNet on one
   latent (every step of every mode), on three (a DG step: ``z*, z_nf, z_f`` in one batch), and
   each classifier's forward and guidance gradient (forward + backward to the latent,
   :func:`pipeline.inference.guidance.energy_gradient`), the face classifier both on its
   ``crop_size`` crop and on the whole masked latent (its input without a crop). From them:
   ``SG/none = 1 + g (c_nf + c_f) / (N u)`` and ``DG/none = SG/none + g (u3 - u) / (N u)`` with
   ``g`` guided steps of ``N``.
2. **Table 2.** none, SG and DG at each guidance rate, timed in interleaved rounds (each round
   runs every cell once, in an order rotated per round) so that the load of a shared machine
   hits all modes alike; medians over ``repeats`` rounds, next to the paper's TC. With a face
   ``crop_size``, SG and DG at rate 0.5 are also timed in the same rounds with the face
   classifier on the whole masked latent (the classifier without a crop), for comparison.
3. **Where it goes** at rate 0.5: the share of each network in a guided segment.

The face classifier's ``crop_size`` comes from ``train_classifier.face.crop_size`` when the
profile has it (else 8 sample / 16 paper); ``--face-crop`` overrides it (0: no crop, the face
classifier on the whole masked latent).
Threads: PyTorch's default (``OMP_NUM_THREADS`` caps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.train_step import PROFILES, build
from pipeline.builders.schedules import training_scheduler
from pipeline.config import load_params
from pipeline.data.face_boxes import face_masks
from pipeline.inference.guidance import Classifiers, GuidanceWeights, energy_gradient
from pipeline.inference.sampling import ddim_sample
from pipeline.models.classifier import SyncClassifier, region_boxes
from pipeline.models.device import autocast, is_cuda, resolve_device

RATES = (0.0, 0.25, 0.5, 0.75, 1.0)
# Table 2's TC (seconds per 256x256 segment, 30 steps): rate -> (SG, DG); rate 0 is unguided.
PAPER_TC = {0.0: (85, 85), 0.25: (91, 96), 0.5: (98, 112), 0.75: (107, 129), 1.0: (114, 141)}
# The sample corpus's median face box (x0, y0, x1, y1), normalised; dilated as infer does.
FACE_BOX = (0.37, 0.22, 0.63, 0.48)
# Face crop_size while the profiles lack the param: the sample box is ~8x7 of 16x16 latent cells;
# the paper's 512 training frames give a latent of 64, the box about 14 cells.
FACE_CROP = {"sample": 8, "paper": 16}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                device: torch.device) -> dict[str, float]:  # fmt: skip
    """Median wall seconds of each ``fns`` entry over ``repeats`` rounds; every round runs each
    once, the order rotated by one per round (CUDA synchronised around each run)."""
    names = list(fns)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if is_cuda(device):
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fns[name]()
            if is_cuda(device):
                torch.cuda.synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def classifier_pair(model, params, frames: int, face_crop: int | None,
                    nonface_crop: int | None, device: torch.device):  # fmt: skip
    """Face and non-face classifiers (random heads, encoders from ``model``), plus the face one
    without a crop for comparison."""

    def one(settings, crop):
        return SyncClassifier.from_univdm(
            model, width=settings.width, layers=settings.layers, heads=settings.heads,
            max_frames=max(frames, 8), crop_size=crop,
        ).to(device).eval()  # fmt: skip

    section = params.train_classifier
    return one(section.face, face_crop), one(section.nonface, nonface_crop), one(section.face, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="sample")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="frame side (default: the profile's evaluate.size: 64 / 256)",
    )
    parser.add_argument("--frames", type=int, default=None, help="segment length (profile's)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (profile's infer)")
    parser.add_argument("--vae-factor", type=int, default=None, help="default: 8 paper, 4 sample")
    parser.add_argument("--audio-dim", type=int, default=80)
    parser.add_argument(
        "--face-crop",
        type=int,
        default=None,
        help="face classifier crop_size (default: the profile's; 0: no crop)",
    )
    parser.add_argument(
        "--nonface-crop",
        type=int,
        default=None,
        help="non-face classifier crop_size: the whole latent resized (default: the profile's, "
        "none; 0: no crop)",
    )
    parser.add_argument("--device", default=None, help="runtime.device (default: profile's)")
    parser.add_argument("--precision", default=None, help="runtime.precision (profile's)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    params = load_params(PROFILES[args.profile])
    size = args.size or params.evaluate.size
    frames = args.frames or params.train_univdm.frames
    steps = args.steps or params.infer.steps
    factor = args.vae_factor or (8 if args.profile == "paper" else 4)
    device = resolve_device(args.device or params.runtime.device, "--device")
    precision = args.precision or params.runtime.precision
    face_crop = args.face_crop
    if face_crop is None:  # the profile's train_classifier.face.crop_size, once it exists
        default = FACE_CROP[args.profile]
        face_crop = getattr(params.train_classifier.face, "crop_size", default)
    face_crop = face_crop or None
    nonface_crop = args.nonface_crop
    if nonface_crop is None:
        nonface_crop = getattr(params.train_classifier.nonface, "crop_size", None)
    nonface_crop = nonface_crop or None
    torch.set_flush_denormal(True)
    torch.manual_seed(0)

    model = build(args.profile, size, frames, factor, args.audio_dim).to(device).eval()
    face, nonface, face_full = classifier_pair(model, params, frames, face_crop, nonface_crop,
                                               device)  # fmt: skip
    config, scheduler = model.config, training_scheduler(params.train_univdm)
    latent = config.latent_size
    reference = torch.randn(1, config.latent_channels, latent, latent, device=device)
    audio = torch.randn(1, frames, config.window, args.audio_dim, device=device)
    noise = torch.randn(1, frames, config.latent_channels, latent, latent, device=device)
    mask = face_masks([FACE_BOX], latent, params.infer.face_dilation).to(device)
    clean_audio = torch.randn(1, frames, args.audio_dim, device=device)
    classifiers = Classifiers(face, nonface, mask, clean_audio)
    infer = params.infer
    weights = dict(lambda_nonface=infer.lambda_nonface, lambda_face=infer.lambda_face,
                   lambda_diff=infer.lambda_diff)  # fmt: skip

    uncropped = dataclasses.replace(classifiers, face=face_full)

    def segment(mode: str, rate: float, pair: Classifiers = classifiers) -> None:
        with autocast(device, precision):
            ddim_sample(model, scheduler, reference, audio, steps, initial_noise=noise,
                        guidance=GuidanceWeights(mode=mode, rate=rate, **weights),
                        classifiers=pair)  # fmt: skip

    t = torch.tensor(500, device=device)
    triple = (noise.repeat(3, 1, 1, 1, 1), t, reference.repeat(3, 1, 1, 1),
              audio.repeat(3, 1, 1, 1))  # fmt: skip

    def unet(*inputs) -> Callable[[], object]:
        def run():
            with torch.no_grad(), autocast(device, precision):
                model(*inputs)

        return run

    def forward(classifier, region) -> Callable[[], object]:
        def run():
            with torch.no_grad(), autocast(device, precision):
                classifier(noise * region[:, None, None], t.expand(1), clean_audio, region=region)

        return run

    def gradient(classifier, region) -> Callable[[], object]:
        def run():
            with autocast(device, precision):
                energy_gradient(classifier, noise, t, clean_audio, region)

        return run

    # 1. Per call.
    segment("dg", 1.0)  # warm-up of every path
    calls = {
        "UNet, 1 latent (every step)": unet(noise, t, reference, audio),
        "UNet, 3 latents (a DG step)": unet(*triple),
        "non-face classifier forward": forward(nonface, 1.0 - mask),
        "non-face classifier gradient": gradient(nonface, 1.0 - mask),
        "face classifier forward": forward(face, mask),
        "face classifier gradient": gradient(face, mask),
        "face gradient, no crop": gradient(face_full, mask),
    }
    for fn in calls.values():
        fn()
    cost = interleaved(calls, 3 * args.repeats, device)
    u, u3 = cost["UNet, 1 latent (every step)"], cost["UNet, 3 latents (a DG step)"]
    c_nf, c_f = cost["non-face classifier gradient"], cost["face classifier gradient"]
    y0, y1, x0, x1 = region_boxes(mask.cpu())[0]
    threads = "" if is_cuda(device) else f", {torch.get_num_threads()} thread(s)"
    print(f"profile {args.profile}: {size}x{size} (latent {latent}x{latent}x"
          f"{config.latent_channels}), {frames} frames/segment, {steps} DDIM steps, {device} "
          f"{precision}{threads}")  # fmt: skip
    crop = f"read at {face_crop}x{face_crop} (crop_size)" if face_crop else "not cropped"
    resized = f", non-face classifier reads {nonface_crop}x{nonface_crop}" if nonface_crop else ""
    print(f"face box (dilated {params.infer.face_dilation}): {y1 - y0}x{x1 - x0} of "
          f"{latent}x{latent} latent cells, {crop}{resized}")  # fmt: skip
    print(f"\n{'per call (median of ' + str(3 * args.repeats) + ')':<34} {'ms':>9} {'x UNet':>7}")
    for name, seconds in cost.items():
        print(f"{name:<34} {seconds * 1e3:>9.1f} {seconds / u:>7.2f}")
    print(
        f"a guided step adds: SG {(c_nf + c_f) / u:.2f} UNet calls (two gradients), DG "
        f"{(c_nf + c_f + u3 - u) / u:.2f} (+ two latents in the UNet call, {(u3 - u) / u:.2f})"
    )

    # 2. Table 2, interleaved.
    rates = sorted(set(args.rates))
    cells: dict[str, Callable[[], object]] = {"none": lambda: segment("none", 0.0)}
    for rate in rates:
        if GuidanceWeights(mode="sg", rate=rate).guided_steps(steps):
            for mode in ("sg", "dg"):
                cells[f"{mode} {rate}"] = lambda m=mode, r=rate: segment(m, r)
    compare = face_crop is not None and 0.5 in rates  # the same rounds, face not cropped
    if compare:
        for mode in ("sg", "dg"):
            cells[f"{mode} uncropped"] = lambda m=mode: segment(m, 0.5, uncropped)
    tc = interleaved(cells, args.repeats, device)
    none = tc["none"]
    print(f"\nTable 2: TC, seconds per {size}x{size} segment of {frames} frames at {steps} steps "
          f"(median of {args.repeats} interleaved rounds)")  # fmt: skip
    print(f"{'rate':>5} {'guided':>6} {'TC SG / DG':>17} {'SG/none':>8} {'DG/none':>8}"
          f" {'predicted':>11}   {'paper TC':>9} {'SG/none':>8} {'DG/none':>8}")  # fmt: skip
    for rate in rates:
        guided = GuidanceWeights(mode="sg", rate=rate).guided_steps(steps)
        sg, dg = (tc.get(f"{m} {rate}", none) for m in ("sg", "dg"))
        pred_sg = 1 + guided * (c_nf + c_f) / (steps * u)
        pred_dg = pred_sg + guided * (u3 - u) / (steps * u)
        paper = PAPER_TC.get(rate)
        theirs = (f"{paper[0]:>4} / {paper[1]:<3} {paper[0] / 85:>8.2f} {paper[1] / 85:>8.2f}"
                  if paper else "")  # fmt: skip
        print(f"{rate:>5.2f} {guided:>3}/{steps:<2} {sg:>8.3f} / {dg:<6.3f} {sg / none:>8.2f} "
              f"{dg / none:>8.2f} {pred_sg:>5.2f}/{pred_dg:<5.2f}   {theirs}")  # fmt: skip
    if compare:
        sg, dg = tc["sg uncropped"], tc["dg uncropped"]
        print(f"{'0.50, face classifier not cropped':>32} {sg:>8.3f} / {dg:<6.3f} "
              f"{sg / none:>8.2f} {dg / none:>8.2f}")  # fmt: skip
    print(f"none: {none:.3f} s per segment; paper goal at rate 0.5: SG/none <= 1.15, "
          "DG/none <= 1.32")  # fmt: skip

    # 3. Where a guided segment's time goes (from the per-call figures), at rate 0.5.
    guided = GuidanceWeights(mode="sg", rate=0.5).guided_steps(steps)
    parts = {"sg": {"UNet": steps * u}, "dg": {"UNet": (steps - guided) * u + guided * u3}}
    for part in parts.values():
        part |= {"non-face gradient": guided * c_nf, "face gradient": guided * c_f}
    print(f"\nwhere a rate-0.5 segment goes ({guided} guided steps of {steps}):")
    for mode, part in parts.items():
        total = sum(part.values())
        shares = ", ".join(f"{name} {100 * value / total:.0f} %" for name, value in part.items())
        print(f"  {mode.upper()}: {shares}")


if __name__ == "__main__":
    main()
