"""One device check that fits in minutes: the paper profile's heavy work, timed, in one table.

    bash benchmarks/gpu_check.sh                       # a GPU (one H200: under 8 minutes)
    bash benchmarks/gpu_check.sh --device cpu --tiny   # here: tiny shapes, a minute or two
    python -m benchmarks.gpu_check --tiny --device cpu # the same, without the wheel install

Rows (the paper profile, ``params/paper.yaml``; ``--tiny`` runs the same code with a tiny UNet,
VAE, classifier and SyncNet at tiny shapes):

- ``train_<size>_b1`` / ``train_<size>_bmax``: UniVDM training steps at 256x256x16 and
  512x512x32 frames, batch 1 and the largest batch that fits (doubled from 2 until CUDA runs out
  of memory, ``--max-batch`` or the budget): UNet forward at a ``t`` per sample, the PAR-weighted
  loss (Eq. 3), backward and AdamW, under bf16 autocast over fp32 weights (what accelerate's
  ``mixed_precision="bf16"`` does) with gradient checkpointing, on given latents (the frozen
  VAE's encoding of the frames is not timed). ``TFLOP/s`` are model FLOPs: 3 x the forward
  FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts at batch 1 (with SDPA's math
  kernel, so attention is counted as matrix products; backward = 2 x forward), x batch; the
  forward that checkpointing recomputes is not counted (the convention of MFU). ``MFU %`` is
  that against ``--peak-tflops`` (the H200's dense bf16, about 790).
- ``tc_none`` / ``tc_sg`` / ``tc_dg``: TC as the paper defines it (Table 2), seconds per 256x256
  segment of ``train_univdm.frames`` frames with ``infer.steps`` (30) DDIM steps, guidance rate
  0.5 and the paper's lambdas, through :func:`pipeline.inference.sampling.ddim_sample` under
  ``runtime.precision`` autocast; the median of ``--repeats`` runs after a warm-up, with the ratio
  to ``none`` (paper: SG 1.15, DG 1.32).
- ``classifier_step``: one PCE classifier training step
  (:func:`pipeline.training.classifier_trainer.classifier_losses`, backward, clipping, AdamW,
  bf16 autocast) on one GPU's share of the paper's batch under DDP (16 items over 8 GPUs: one real
  window and its negative) at the longest ``negatives.lengths`` that fits, 512x512 latents.
- ``negatives_batch``: one batch of the ``negatives`` stage
  (:class:`pipeline.inference.negatives.PairGenerator`: VAE encoding of the real windows and the
  references, ``negatives.ddim_steps`` DDIM steps per segment) of ``negatives.batch_size``
  windows of the shortest length (random frames instead of decoded video).
- ``syncnet_eval``: Sync-C / Sync-D of one 4 s 256x256 video
  (:func:`pipeline.metrics.sync.evaluate_sync`, the official SyncNet architecture).

Weights are random (the SVD UNet's when ``train_univdm.unet.pretrained`` exists): a timing
check, whose speed does not depend on the values. ``--budget-s`` bounds the whole run: a section
that would not fit in what is left (after the minimal time of the sections still to come) is
printed as skipped, with the reason. Peak memory is CUDA's max allocated on a GPU, the process's
max RSS on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.builders.schedules import training_scheduler
from pipeline.config import Params, load_params
from pipeline.data.face_boxes import face_masks
from pipeline.data.windows import ClipRecord
from pipeline.inference.guidance import Classifiers, GuidanceWeights
from pipeline.inference.negatives import PairGenerator
from pipeline.inference.sampling import ddim_sample
from pipeline.metrics.sync import evaluate_sync
from pipeline.models.classifier import SyncClassifier
from pipeline.models.device import autocast, is_cuda, resolve_device
from pipeline.models.syncnet import SyncNet
from pipeline.models.univdm import UniVDM
from pipeline.models.vae import build_vae
from pipeline.training.classifier_data import PairBatch
from pipeline.training.classifier_trainer import classifier_losses
from pipeline.training.losses import par_loss
from pipeline.training.univdm_trainer import univdm_config

PAPER = Path(__file__).resolve().parents[1] / "params" / "paper.yaml"
H200_BF16_TFLOPS = 790.0
WAV2VEC2_BASE = 768  # hidden size of wav2vec2-base: paper audio features = 768 x layers
FACE_BOX = (0.3, 0.05, 0.7, 0.45)  # normalised (x0, y0, x1, y1): a speaker's head
ROWS = (
    "train_256_b1", "train_256_bmax", "train_512_b1", "train_512_bmax", "tc_none", "tc_sg",
    "tc_dg", "classifier_step", "negatives_batch", "syncnet_eval",
)  # fmt: skip
COLUMNS = ("row", "what", "shape", "batch", "s/it", "it/s", "peak GiB", "TFLOP/s", "MFU %",
           "note")  # fmt: skip


class Skipped(Exception):
    """A section (or the rest of one) does not fit in the budget, or ran out of memory."""


@dataclass
class Row:
    """One line of the table; ``skipped`` holds the reason when it was not measured."""

    row: str
    what: str
    shape: str
    batch: int | None = None
    seconds: float | None = None  # per iteration (step, segment, batch, evaluation)
    peak_gib: float | None = None
    tflops: float | None = None
    mfu: float | None = None
    note: str = ""
    skipped: str | None = None

    def cells(self) -> list[str]:
        def num(x, digits):
            return "-" if x is None else f"{x:.{digits}f}"

        def sig(x):
            return "-" if x is None else f"{x:.3g}"

        if self.skipped is not None:
            return [self.row, self.what, self.shape, "-", "-", "-", "-", "-", "-",
                    f"skipped: {self.skipped}"]  # fmt: skip
        rate = None if not self.seconds else 1.0 / self.seconds
        return [self.row, self.what, self.shape, "-" if self.batch is None else str(self.batch),
                num(self.seconds, 4), num(rate, 3), num(self.peak_gib, 2), sig(self.tflops),
                sig(self.mfu), self.note]  # fmt: skip


@dataclass(frozen=True)
class Shapes:
    """What the check runs at: the paper's shapes, or tiny ones (``--tiny``)."""

    train: tuple[tuple[int, int], ...]  # (size, frames) of the UniVDM training rows
    tc_size: int
    max_batch: int
    repeats: int
    syncnet_frames: int
    reserve_s: dict[str, float]  # least time each section needs (what later sections keep)


PAPER_SHAPES = Shapes(train=((256, 16), (512, 32)), tc_size=256, max_batch=64, repeats=3,
                      syncnet_frames=100,
                      reserve_s={"train_256": 15, "train_512": 30, "tc": 40, "classifier": 20,
                                 "negatives": 70, "syncnet": 10})  # fmt: skip
TINY_SHAPES = Shapes(train=((32, 4), (48, 6)), tc_size=32, max_batch=2, repeats=1,
                     syncnet_frames=30,
                     reserve_s=dict.fromkeys(("train_256", "train_512", "tc", "classifier",
                                              "negatives", "syncnet"), 0.0))  # fmt: skip


def tiny_params(params: Params) -> Params:
    """``params`` with tiny networks and windows (UNet, classifier, VAE, negatives) and fewer
    DDIM steps (6 for TC, 4 for the negatives): the code paths of the check, in seconds."""
    unet = params.train_univdm.unet.model_copy(update={
        "block_out_channels": [32, 32], "layers_per_block": 1, "attention_head_dim": 8,
        "cross_attention_dim": 32, "addition_time_embed_dim": 8,
        "cross_attention_levels": [True, False],
    })  # fmt: skip
    classifier = params.train_classifier.face.model_copy(update={"width": 32, "layers": 1,
                                                                 "heads": 4})  # fmt: skip
    return params.model_copy(update={
        "train_univdm": params.train_univdm.model_copy(update={"unet": unet, "size": 32,
                                                               "frames": 4}),
        "train_classifier": params.train_classifier.model_copy(update={"face": classifier,
                                                                       "nonface": classifier}),
        "train_vae": params.train_vae.model_copy(update={"block_out_channels": [32] * 4,
                                                         "layers_per_block": 1}),
        "negatives": params.negatives.model_copy(update={"lengths": [6, 12], "batch_size": 2,
                                                         "ddim_steps": 4}),
        "infer": params.infer.model_copy(update={"steps": 6}),
    })  # fmt: skip


# ---------------------------------------------------------------------------------- helpers
class Budget:
    """Seconds left of ``--budget-s``, and what the sections still to come need."""

    def __init__(self, seconds: float, reserve: dict[str, float]):
        self.total, self.reserve = seconds, dict(reserve)
        self.started = time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.started)

    def spare(self, section: str) -> float:
        """Seconds ``section`` may spend: what is left less the later sections' reserves."""
        names = list(self.reserve)
        later = names[names.index(section) + 1 :]
        return self.left() - sum(self.reserve[n] for n in later)

    def need(self, section: str, seconds: float, what: str) -> None:
        """Raise :class:`Skipped` when ``what`` (about ``seconds``) does not fit."""
        spare = self.spare(section)
        if seconds > spare:
            raise Skipped(f"{what} needs ~{seconds:.0f} s, {max(spare, 0):.0f} s of the budget "
                          "left for it")  # fmt: skip


def synchronize(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """CUDA's max allocated since :func:`reset_peak`; on the CPU the process's max RSS."""
    if is_cuda(device):
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def free_memory(device: torch.device) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.empty_cache()


def seconds_of(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``fn()`` (CUDA synchronised before and after)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    return statistics.median(seconds_of(fn, device) for _ in range(max(1, repeats)))


def on_device(build: Callable[[], torch.nn.Module], device: torch.device) -> torch.nn.Module:
    """``build()`` with its parameters made on ``device`` (fast random init of large models),
    then moved there (a few diffusers parameters are made on the CPU whatever the default)."""
    with torch.device(device):
        module = build()
    return module.to(device)


def audio_dim(params: Params) -> int:
    extract = params.extract
    if extract.audio_features == "wav2vec2":
        return WAV2VEC2_BASE * len(extract.wav2vec2.layers)
    return extract.n_mels


def build_univdm(params: Params, size: int, frames: int, device: torch.device,
                 tiny: bool) -> tuple[UniVDM, str]:  # fmt: skip
    """The profile's UniVDM for ``size`` x ``frames`` (:func:`univdm_config`, a VAE of 4
    channels and factor 8, a learned image token instead of CLIP's) and how it was initialised.
    """
    train = params.train_univdm.model_copy(update={"size": size, "frames": frames})
    config = univdm_config(train, params.cut.fps, 4, 8, audio_dim(params), None, 0.18215)
    pretrained = train.unet.pretrained
    torch.manual_seed(0)
    if not tiny and pretrained is not None and Path(pretrained).is_dir():
        model = UniVDM.from_pretrained_unet(config, pretrained).to(device)
        return model, f"SVD UNet from {pretrained}"
    return on_device(lambda: UniVDM(config), device), "random init (timing only)"


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error)


# ---------------------------------------------------------------------------------- sections
def train_rows(params: Params, size: int, frames: int, shapes: Shapes, device: torch.device,
               budget: Budget, tiny: bool, peak_tflops: float) -> list[Row]:  # fmt: skip
    """``train_<size>_b1`` and ``train_<size>_bmax`` (module docstring)."""
    section = "train_256" if size == shapes.train[0][0] else "train_512"
    key = f"train_{256 if section == 'train_256' else 512}"
    shape = f"{size}x{size}x{frames}"
    what = "UniVDM train step"
    budget.need(section, shapes.reserve_s[section], "the section")
    model, init = build_univdm(params, size, frames, device, tiny)
    model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.train_univdm.lr)
    config = model.config
    h = config.latent_size
    a = audio_dim(params)

    def inputs(batch: int):
        latents = torch.randn(batch, frames, 4, h, h, device=device)
        reference = torch.randn(batch, 4, h, h, device=device)
        audio = torch.randn(batch, frames, config.window, a, device=device)
        weights = torch.rand(batch, frames, h, h, device=device) * 3 + 1
        return latents, reference, audio, weights

    def stepper(batch: int) -> Callable[[], None]:
        latents, reference, audio, weights = inputs(batch)
        noise = torch.randn_like(latents)

        def step() -> None:
            t = torch.randint(0, config.num_train_timesteps, (batch,), device=device)
            with autocast(device, "bf16"):
                pred = model(latents, t, reference, audio).epsilon
            loss = par_loss(pred.float().transpose(1, 2), noise.transpose(1, 2), weights)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    # Model FLOPs of one sample's step: 3 x the forward's (module docstring).
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    latents, reference, audio, _ = inputs(1)
    t = torch.tensor([500], device=device)
    with (torch.no_grad(), autocast(device, "bf16"), sdpa_kernel(SDPBackend.MATH),
          FlopCounterMode(display=False) as counter):  # fmt: skip
        model(latents, t, reference, audio)
    flops_per_sample = 3.0 * counter.get_total_flops()
    del latents, reference, audio
    free_memory(device)

    def row(name: str, batch: int, seconds: float, peak: float, note: str) -> Row:
        tflops = flops_per_sample * batch / seconds / 1e12
        return Row(name, what, shape, batch, seconds, peak, tflops, 100 * tflops / peak_tflops,
                   note)  # fmt: skip

    rows: list[Row] = []
    note = f"bf16, checkpointing, {init}"
    step = stepper(1)
    first = seconds_of(step, device)  # warm-up (allocations, kernel choice)
    reset_peak(device)
    budget.need(section, first * shapes.repeats, "batch 1's timed steps")
    one = median_seconds(step, shapes.repeats, device)
    rows.append(row(f"{key}_b1", 1, one, peak_gib(device), note))
    del step
    free_memory(device)

    # The largest batch that fits: doubling, one trial step each, until OOM / cap / budget.
    best, best_s, stop = 1, one, f"--max-batch {shapes.max_batch}"
    batch = 2
    while batch <= shapes.max_batch:
        estimate = 2 * best_s * batch / best  # the trial and the timed steps after it
        if estimate * (1 + shapes.repeats) / 2 > budget.spare(section):
            stop = "budget"
            break
        oom = False
        try:
            step = stepper(batch)
            trial = seconds_of(step, device)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_oom(error):
                raise
            oom = True
        if oom:  # freed outside the handler: its traceback holds the step's tensors
            stop = f"OOM at {batch}"
            optimizer.zero_grad(set_to_none=True)
            step = None
            free_memory(device)
            break
        best, best_s = batch, trial
        del step
        free_memory(device)
        batch *= 2
    if best == 1:
        rows.append(Row(f"{key}_bmax", what, shape, skipped=f"batch 2 did not fit ({stop})"))
    else:
        note = f"{note}; search stopped: {stop}"
        reset_peak(device)
        oom = False
        try:
            step = stepper(best)
            seconds_of(step, device)
            seconds = median_seconds(step, shapes.repeats, device)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_oom(error):
                raise
            oom = True
        if oom:  # the allocator, fragmented by the failed batch: the search's one step
            step = None
            free_memory(device)
            seconds, note = best_s, f"{note}; timed by the search's single step"
        rows.append(row(f"{key}_bmax", best, seconds, peak_gib(device), note))
    return rows


def tc_rows(params: Params, shapes: Shapes, device: torch.device, budget: Budget,
            tiny: bool) -> tuple[list[Row], dict]:  # fmt: skip
    """``tc_none`` / ``tc_sg`` / ``tc_dg``; also returns the models for the classifier row."""
    budget.need("tc", shapes.reserve_s["tc"], "the section")
    infer = params.infer
    size, frames = shapes.tc_size, params.train_univdm.frames
    model, init = build_univdm(params, size, frames, device, tiny)
    model.eval()
    settings = params.train_classifier.face
    max_frames = max([frames, *params.negatives.lengths])

    def classifier() -> SyncClassifier:
        return SyncClassifier.from_univdm(model, width=settings.width, layers=settings.layers,
                                          heads=settings.heads, dropout=settings.dropout,
                                          max_frames=max_frames)  # fmt: skip

    face = on_device(classifier, device).eval()
    nonface = on_device(classifier, device).eval()
    config = model.config
    h, a = config.latent_size, audio_dim(params)
    reference = torch.randn(1, 4, h, h, device=device)
    audio = torch.randn(1, frames, config.window, a, device=device)
    noise = torch.randn(1, frames, 4, h, h, device=device)
    mask = face_masks(np.array([FACE_BOX]), h, infer.face_dilation).to(device)
    classifiers = Classifiers(face=face, nonface=nonface, face_mask=mask,
                              audio=torch.randn(1, frames, a, device=device))  # fmt: skip
    scheduler = training_scheduler(params.train_univdm)

    def segment(mode: str) -> None:
        weights = GuidanceWeights(mode=mode, lambda_nonface=infer.lambda_nonface,
                                  lambda_face=infer.lambda_face, lambda_diff=infer.lambda_diff,
                                  rate=0.5, dg_form=infer.dg_form)  # fmt: skip
        with autocast(device, params.runtime.precision):
            ddim_sample(model, scheduler, reference, audio, infer.steps, initial_noise=noise,
                        guidance=weights, classifiers=classifiers)  # fmt: skip

    warm = seconds_of(lambda: segment("dg"), device)
    shape = f"{size}x{size}x{frames}"
    rows, seconds = [], {}
    for mode in ("none", "sg", "dg"):
        name = f"tc_{mode}"
        try:
            budget.need("tc", warm * shapes.repeats, f"{mode} x{shapes.repeats}")
        except Skipped as skip:
            rows.append(Row(name, f"TC {mode}", shape, skipped=str(skip)))
            continue
        reset_peak(device)
        seconds[mode] = median_seconds(lambda m=mode: segment(m), shapes.repeats, device)
        ratio = f"{seconds[mode] / seconds['none']:.2f} x none" if "none" in seconds else ""
        rows.append(Row(name, f"TC {mode}", shape, 1, seconds[mode], peak_gib(device),
                        note=f"{infer.steps} DDIM steps, rate 0.5, {params.runtime.precision}; "
                        f"{ratio}; {init}"))  # fmt: skip
    return rows, {"classifier": nonface}


def classifier_row(params: Params, classifier: SyncClassifier, shapes: Shapes,
                   device: torch.device, budget: Budget) -> Row:  # fmt: skip
    """``classifier_step`` (module docstring); ``classifier`` is the non-face one of TC."""
    budget.need("classifier", shapes.reserve_s["classifier"], "the section")
    settings = params.train_classifier.nonface
    h = params.train_univdm.size // 8
    a = audio_dim(params)
    scheduler = training_scheduler(params.train_univdm)
    classifier.train()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)  # fmt: skip
    generator = torch.Generator(device)

    def stepper(length: int) -> Callable[[], None]:
        batch = PairBatch(latents=torch.randn(2, length, 4, h, h), audio=torch.randn(2, length, a),
                          face_boxes=np.array([FACE_BOX, FACE_BOX], np.float32),
                          labels=torch.tensor([1.0, 0.0]))  # fmt: skip

        def step() -> None:
            generator.manual_seed(0)
            with autocast(device, "bf16"):
                losses = classifier_losses(classifier, "nonface", scheduler, batch, generator,
                                           settings.mask_prob, settings.face_dilation)  # fmt: skip
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(classifier.parameters(), settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    failed = []
    for length in sorted(params.negatives.lengths, reverse=True):
        seconds = None
        try:
            step = stepper(length)
            warm = seconds_of(step, device)
            budget.need("classifier", warm * shapes.repeats, f"L={length} x{shapes.repeats}")
            reset_peak(device)
            seconds = median_seconds(step, shapes.repeats, device)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_oom(error):
                raise
        except Skipped:
            pass
        if seconds is None:  # out of memory or of budget: a shorter window
            failed.append(length)
            step = None
            optimizer.zero_grad(set_to_none=True)
            free_memory(device)
            continue
        note = "bf16, 1 window + its negative (16 items / 8 GPUs)"
        if failed:
            note += f"; L={failed} did not fit"
        return Row("classifier_step", "classifier train step", f"{h}x{h} latent x L={length}", 2,
                   seconds, peak_gib(device), note=note)  # fmt: skip
    return Row("classifier_step", "classifier train step", f"{h}x{h} latent",
               skipped=f"no length of {params.negatives.lengths} fitted")  # fmt: skip


class _RandomFrames(PairGenerator):
    """A :class:`PairGenerator` whose clips' frames are random (no video files needed)."""

    def frames(self, clip_id: str, indices: list[int]) -> np.ndarray:
        rng = np.random.default_rng(len(indices))
        return rng.integers(0, 256, (len(indices), self.size, self.size, 3), dtype=np.uint8)


def negatives_row(params: Params, shapes: Shapes, device: torch.device, budget: Budget,
                  tiny: bool) -> Row:  # fmt: skip
    """``negatives_batch`` (module docstring)."""
    budget.need("negatives", shapes.reserve_s["negatives"], "the section")
    train, neg = params.train_univdm, params.negatives
    model, init = build_univdm(params, train.size, train.frames, device, tiny)
    vae_params = params.train_vae
    vae = on_device(lambda: build_vae(train.size, vae_params.block_out_channels,
                                      vae_params.layers_per_block, vae_params.latent_channels,
                                      vae_params.norm_num_groups), device)  # fmt: skip
    length, n = min(neg.lengths), 4 * max(neg.lengths)
    a = audio_dim(params)
    records = [ClipRecord(f"c{i}", "", "", n, train.size, np.zeros((n, 133, 3), np.float32),
                          np.random.default_rng(i).normal(size=(n, a)).astype(np.float32))
               for i in range(2)]  # fmt: skip
    generator = _RandomFrames.build(model, vae, records, train.size, neg.ddim_steps,
                                    training_scheduler(train), device=device,
                                    precision=params.runtime.precision)  # fmt: skip
    generator.model.eval()
    rows = pd.DataFrame([{"clip_id": "c0", "start": 3 * i, "length": length, "ref_clip_id": "c1",
                          "ref_frame": i, "audio_clip_id": "c1", "audio_start": 2 * i, "seed": i}
                         for i in range(neg.batch_size)])  # fmt: skip

    def batch(part: pd.DataFrame) -> None:
        with torch.no_grad():
            generator.positives(part)
            generator.negatives(part)

    warm = seconds_of(lambda: batch(rows.iloc[:1]), device)  # one window: warm-up
    budget.need("negatives", warm * len(rows), f"a batch of {len(rows)}")
    reset_peak(device)
    seconds = seconds_of(lambda: batch(rows), device)
    return Row("negatives_batch", "negatives batch", f"{train.size}x{train.size}x{length}",
               len(rows), seconds, peak_gib(device),
               note=f"{neg.ddim_steps} DDIM steps, {params.runtime.precision}; {init}")  # fmt: skip


def syncnet_row(params: Params, shapes: Shapes, device: torch.device, budget: Budget,
                tiny: bool) -> Row:  # fmt: skip
    """``syncnet_eval`` (module docstring)."""
    budget.need("syncnet", shapes.reserve_s["syncnet"], "the section")
    model = (SyncNet(width=0.25, size=48) if tiny else SyncNet.official()).to(device)
    side, frames = (64 if tiny else params.evaluate.size), shapes.syncnet_frames
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    wave = (rng.normal(size=int(frames / params.cut.fps * 16000)) * 0.1).astype(np.float32)
    box = [side * 0.3, side * 0.1, side * 0.7, side * 0.5]
    crop_scale = params.train_syncnet.crop_scale

    def evaluation() -> None:
        with autocast(device, params.runtime.precision):
            evaluate_sync(model, video, wave, 16000, box, crop_scale)

    warm = seconds_of(evaluation, device)
    budget.need("syncnet", warm * shapes.repeats, f"x{shapes.repeats}")
    reset_peak(device)
    seconds = median_seconds(evaluation, shapes.repeats, device)
    return Row("syncnet_eval", "SyncNet evaluation", f"{side}x{side}x{frames}", 1, seconds,
               peak_gib(device), note=f"{params.runtime.precision}, random weights")  # fmt: skip


# ---------------------------------------------------------------------------------- the check
def run(device: torch.device, tiny: bool = False, budget_s: float = 420.0,
        peak_tflops: float = H200_BF16_TFLOPS, max_batch: int | None = None,
        params_path: str | Path = PAPER) -> tuple[list[str], list[Row]]:  # fmt: skip
    """Every section in turn; returns the header lines and the rows (``ROWS`` order)."""
    params = load_params(params_path)
    shapes = TINY_SHAPES if tiny else PAPER_SHAPES
    if tiny:
        params = tiny_params(params)
    if max_batch is not None:
        shapes = Shapes(**(asdict(shapes) | {"max_batch": max_batch}))
    torch.set_flush_denormal(True)
    budget = Budget(budget_s, shapes.reserve_s)
    name = torch.cuda.get_device_name(device) if is_cuda(device) else "CPU"
    header = [
        f"gpu_check: {'tiny shapes' if tiny else 'paper profile'} on {device} ({name}), "
        f"torch {torch.__version__}, budget {budget_s:.0f} s",
        "weights random unless the SVD UNet is on disk: timings only, values meaningless",
    ]
    rows: dict[str, Row] = {}
    models: dict = {}

    def section(keys: list[tuple[str, str, str]], fn: Callable[[], list[Row] | Row]) -> None:
        reason = None
        try:
            out = fn()
        except Skipped as skip:
            reason = str(skip)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_oom(error):
                raise
            reason = "out of memory"
        free_memory(device)  # what the section built is gone with its frame
        if reason is not None:
            out = [Row(key, what, shape, skipped=reason) for key, what, shape in keys]
        for row in [out] if isinstance(out, Row) else out:
            rows[row.row] = row

    for (size, frames), key in zip(shapes.train, ("train_256", "train_512"), strict=True):
        shape = f"{size}x{size}x{frames}"
        section([(f"{key}_b1", "UniVDM train step", shape),
                 (f"{key}_bmax", "UniVDM train step", shape)],
                lambda s=size, f=frames: train_rows(params, s, f, shapes, device, budget, tiny,
                                                    peak_tflops))  # fmt: skip

    def tc() -> list[Row]:
        out, found = tc_rows(params, shapes, device, budget, tiny)
        models.update(found)
        return out

    tc_shape = f"{shapes.tc_size}x{shapes.tc_size}x{params.train_univdm.frames}"
    section([(f"tc_{m}", f"TC {m}", tc_shape) for m in ("none", "sg", "dg")], tc)
    if "classifier" in models:
        section([("classifier_step", "classifier train step", "")],
                lambda: classifier_row(params, models.pop("classifier"), shapes, device,
                                       budget))  # fmt: skip
    else:
        rows["classifier_step"] = Row("classifier_step", "classifier train step", "",
                                      skipped="no classifier (TC section did not run)")  # fmt: skip
    free_memory(device)
    section([("negatives_batch", "negatives batch", "")],
            lambda: negatives_row(params, shapes, device, budget, tiny))  # fmt: skip
    section([("syncnet_eval", "SyncNet evaluation", "")],
            lambda: syncnet_row(params, shapes, device, budget, tiny))  # fmt: skip
    header.append(f"spent {budget_s - budget.left():.0f} s")
    return header, [rows[key] for key in ROWS]


def format_table(rows: list[Row]) -> str:
    """The rows as one Markdown table (``COLUMNS``)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU, tests)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="seconds for the whole check (what won't fit is skipped)")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS,
                        help="the device's dense bf16 TFLOP/s for MFU (H200: ~790)")  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=None, help="cap of the batch search")
    parser.add_argument("--params", default=str(PAPER), help="the profile (paper)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device, "--device")
    header, rows = run(device, args.tiny, args.budget_s, args.peak_tflops, args.max_batch,
                       args.params)  # fmt: skip
    print("\n".join(header))
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]},
                                        indent=2, default=str) + "\n")  # fmt: skip
    return 0


__all__ = ["COLUMNS", "ROWS", "Row", "format_table", "main", "run"]

if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
