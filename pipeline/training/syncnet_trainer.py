"""Training a SyncNet on the corpus and checking it by recovering known audio delays.

Data: one :class:`SyncClip` per clip, its face crops (the official crop of the first frame's face
box, :func:`~pipeline.metrics.sync.face_crops`) and its MFCCs
(:func:`~pipeline.metrics.sync.mfcc_features`). A window start ``i`` of a clip is usable when
video frames ``i .. i+4`` and MFCC columns ``4i .. 4i+19`` exist.

Each step (Chung & Zisserman 2016, Section 3):

1. draw ``P = batch_size // 2`` (clip, start ``i``) pairs uniformly over all usable windows,
   with a generator seeded by ``(seed, step)``, so a resumed run sees exactly the batches of an
   uninterrupted one; each window gets a shift ``s`` drawn uniformly from the shifts with
   ``min_shift <= |s| <= max_shift`` (either sign) whose window ``i + s`` is usable;
2. positive pair (``y = 1``): the 5 frames with their own MFCC window ``i``; negative pair
   (``y = 0``): the same frames with MFCC window ``i + s`` (audio off by ``s`` frames), so the
   net cannot tell the pairs apart by the face alone;
3. embeddings of both streams; ``d = || v - a + 1e-6 ||_2`` on the raw embeddings: the official
   features are not normalised and the metric compares them by plain Euclidean distance, so
   training does the same;
4. contrastive loss (the paper's Eq. 1-2) over the ``2P`` pairs,
   ``E = 1 / (2 * 2P) * sum_n [ y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2 ]``, minimised with
   AdamW;
5. every ``save_every`` steps and at the last step a checkpoint (model with its BatchNorm
   statistics, optimizer, RNG) with the run fingerprint; older ones pruned
   (:class:`~pipeline.training.loop.TrainingLoop`: also the resume and the NaN guard).

Check (:func:`offset_accuracy`, held-out clips, eval mode): for each shift ``d`` the audio is
delayed by ``d`` frames relative to the video (by cropping the two streams, no padding), the
offset search of :mod:`pipeline.metrics.sync` runs, and a clip counts as recovered when its
offset is ``-d +- 1`` (the metric's sign convention). It also reports the mean confidence and
minimum distance of the in-sync clips against the same clips paired with another held-out clip's
audio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import TrainSyncNetParams
from pipeline.metrics.sync import (
    MFCC_PER_FRAME,
    PAIRWISE_EPS,
    SAMPLE_RATE,
    embed_windows,
    face_crops,
    mfcc_features,
    offset_distances,
    sync_scores,
)
from pipeline.models.syncnet import MFCC_STEPS, VIDEO_FRAMES, SyncNet
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.loop import LoopResult, LoopSettings, TrainingLoop


# ---------------------------------------------------------------------------------- data
@dataclass
class SyncClip:
    """One clip's SyncNet inputs.

    ``crops``: ``(T, S, S, 3)`` uint8 RGB face crops; ``mfcc``: ``(13, n)`` at 100 Hz.
    """

    clip_id: str
    crops: np.ndarray
    mfcc: np.ndarray

    @property
    def n_windows(self) -> int:
        """Usable window starts: ``i <= T - 5`` and ``4i + 20 <= n``."""
        by_video = len(self.crops) - VIDEO_FRAMES + 1
        by_audio = (self.mfcc.shape[1] - MFCC_STEPS) // MFCC_PER_FRAME + 1
        return max(0, min(by_video, by_audio))


def build_sync_clips(frames_by_clip: Mapping[str, np.ndarray], waves: Mapping[str, np.ndarray],
                     boxes: Mapping[str, Sequence[float]], crop_scale: float, size: int,
                     sample_rate: int = SAMPLE_RATE) -> list[SyncClip]:  # fmt: skip
    """:class:`SyncClip` of every clip, sorted by clip id.

    Args:
        frames_by_clip: clip id -> ``(T, H, W, 3)`` uint8 RGB frames (25 fps).
        waves: clip id -> ``(samples,)`` mono audio at ``sample_rate`` (floats in [-1, 1]).
        boxes: clip id -> ``(x0, y0, x1, y1)`` face box in pixels of that clip's frames.
        crop_scale, size: of :func:`~pipeline.metrics.sync.face_crops`.
    """
    missing = sorted(set(frames_by_clip) - set(waves)) + sorted(set(frames_by_clip) - set(boxes))
    if missing:
        raise ValueError(f"no audio or face box for clips {sorted(set(missing))}")
    return [
        SyncClip(clip_id, face_crops(frames_by_clip[clip_id], boxes[clip_id], crop_scale, size),
                 mfcc_features(waves[clip_id], sample_rate))
        for clip_id in sorted(frames_by_clip)
    ]  # fmt: skip


def valid_shifts(start: int, n_windows: int, min_shift: int, max_shift: int) -> np.ndarray:
    """Signed shifts ``s``, ``min_shift <= |s| <= max_shift``, with ``0 <= start + s < n``."""
    shifts = np.arange(-max_shift, max_shift + 1)
    keep = (np.abs(shifts) >= min_shift) & (start + shifts >= 0) & (start + shifts < n_windows)
    return shifts[keep]


class PairSampler:
    """Draws (clip, start, shift) triples; see step 1 of the module docstring."""

    def __init__(self, clips: Sequence[SyncClip], min_shift: int, max_shift: int):
        if not 1 <= min_shift <= max_shift:
            raise ValueError(f"need 1 <= min_shift <= max_shift, got {min_shift}, {max_shift}")
        self.min_shift, self.max_shift = min_shift, max_shift
        candidates = [(c, i) for c, clip in enumerate(clips) for i in range(clip.n_windows)
                      if len(valid_shifts(i, clip.n_windows, min_shift, max_shift))]  # fmt: skip
        if not candidates:
            longest = max((clip.n_windows for clip in clips), default=0)
            raise ValueError(f"no clip has a window with an off-sync partner {min_shift}.."
                             f"{max_shift} frames away (longest: {longest} windows)")  # fmt: skip
        self.clips = clips
        self.candidates = np.array(candidates, dtype=np.int64)  # (K, 2): clip index, start

    def draw(self, step: int, count: int, seed: int) -> np.ndarray:
        """``(count, 3)`` int64 rows ``(clip index, start, shift)`` of ``step``."""
        rng = np.random.default_rng([seed, step])
        rows = self.candidates[rng.integers(0, len(self.candidates), count)]
        shifts = []
        for c, i in rows:
            options = valid_shifts(int(i), self.clips[c].n_windows, self.min_shift,
                                   self.max_shift)  # fmt: skip
            shifts.append(options[rng.integers(0, len(options))])
        return np.column_stack([rows, np.array(shifts, dtype=np.int64)])


def pair_batch(clips: Sequence[SyncClip], picks: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Inputs of the pairs ``picks`` ``(P, 3)`` (clip index, start ``i``, shift ``s``).

    Returns video ``(P, 3, 5, S, S)`` BGR 0..255, in-sync audio ``(P, 1, 13, 20)`` (window
    ``i``) and off-sync audio ``(P, 1, 13, 20)`` (window ``i + s``).
    """
    video, synced, shifted = [], [], []
    for c, i, s in picks:
        clip = clips[int(c)]
        crops = clip.crops[i : i + VIDEO_FRAMES][..., ::-1]  # RGB -> BGR
        video.append(np.transpose(crops, (3, 0, 1, 2)))  # (3, 5, S, S)
        for j, out in ((i, synced), (i + s, shifted)):
            start = MFCC_PER_FRAME * j
            out.append(clip.mfcc[None, :, start : start + MFCC_STEPS])
    return (torch.from_numpy(np.stack(video).astype(np.float32)),
            torch.from_numpy(np.stack(synced).astype(np.float32)),
            torch.from_numpy(np.stack(shifted).astype(np.float32)))  # fmt: skip


def contrastive_loss(distances: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``1/(2N) sum [y d^2 + (1 - y) max(margin - d, 0)^2]`` over ``N`` pairs (SyncNet Eq. 1-2).

    ``distances``, ``labels``: ``(N,)``; labels 1 in sync, 0 off sync.
    """
    if distances.shape != labels.shape:
        raise ValueError(f"distances {tuple(distances.shape)} and labels "
                         f"{tuple(labels.shape)} differ")  # fmt: skip
    labels = labels.to(distances.dtype)
    per_pair = labels * distances**2 + (1 - labels) * (margin - distances).clamp_min(0) ** 2
    return 0.5 * per_pair.mean()


def pair_losses(model: SyncNet, video: torch.Tensor, synced: torch.Tensor, shifted: torch.Tensor,
                margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Steps 3-4: ``(loss, in-sync distances (P,), off-sync distances (P,))``."""
    pairs = len(video)
    video_emb = model.forward_video(video)
    audio_emb = model.forward_audio(torch.cat([synced, shifted]))
    d_sync = F.pairwise_distance(video_emb, audio_emb[:pairs], eps=PAIRWISE_EPS)
    d_off = F.pairwise_distance(video_emb, audio_emb[pairs:], eps=PAIRWISE_EPS)
    labels = torch.cat([torch.ones(pairs), torch.zeros(pairs)]).to(d_sync.device)
    return contrastive_loss(torch.cat([d_sync, d_off]), labels, margin), d_sync, d_off


# ---------------------------------------------------------------------------------- check
def _delayed(video_emb: torch.Tensor, audio_emb: torch.Tensor, delay: int):
    """Embeddings of the clip with its audio delayed by ``delay`` frames, by cropping.

    ``delay >= 0``: video windows ``delay..`` with audio windows ``0..`` (video window ``j``
    then matches audio window ``j + delay``); ``delay < 0``: video ``0..`` with audio
    ``|delay|..``.
    """
    if delay >= 0:
        video, audio = video_emb[delay:], audio_emb
    else:
        video, audio = video_emb, audio_emb[-delay:]
    n = min(len(video), len(audio))
    return video[:n], audio[:n]


def offset_accuracy(model: SyncNet, clips: Sequence[SyncClip],
                    shifts: Sequence[int] = (-6, -3, 0, 3, 6), vshift: int = 15,
                    tolerance: int = 1, batch_size: int = 32) -> dict[str, float]:  # fmt: skip
    """Known-delay check of a SyncNet on ``clips`` (module docstring).

    Returns ``offset_accuracy`` (fraction of (clip, shift) cases whose offset is ``-shift +-
    tolerance``), ``offset_accuracy_d{shift}`` per shift, ``confidence_in_sync`` /
    ``min_dist_in_sync`` (shift 0, own audio), ``confidence_other_audio`` /
    ``min_dist_other_audio`` (clip ``k`` with clip ``k+1``'s audio; needs >= 2 clips) and the
    number of ``clips``. Clips too short for a shift (fewer than ``max |shift| + 1`` windows)
    are skipped.
    """
    usable = [c for c in clips if c.n_windows > max(abs(s) for s in shifts)]
    if not usable:
        raise ValueError(f"no clip has more than {max(abs(s) for s in shifts)} windows")
    embeddings = [embed_windows(model, c.crops, c.mfcc, c.n_windows, batch_size) for c in usable]
    out: dict[str, float] = {"clips": len(usable)}
    hits_all = []
    for shift in shifts:
        hits = []
        for video_emb, audio_emb in embeddings:
            scores = sync_scores(offset_distances(*_delayed(video_emb, audio_emb, shift), vshift),
                                 vshift)  # fmt: skip
            hits.append(abs(scores.offset + shift) <= tolerance)
        out[f"offset_accuracy_d{shift}"] = float(np.mean(hits))
        hits_all += hits
    out["offset_accuracy"] = float(np.mean(hits_all))
    own = [sync_scores(offset_distances(v, a, vshift), vshift) for v, a in embeddings]
    out["confidence_in_sync"] = float(np.mean([s.confidence for s in own]))
    out["min_dist_in_sync"] = float(np.mean([s.min_dist for s in own]))
    if len(embeddings) >= 2:
        other = []
        for k, (video_emb, _) in enumerate(embeddings):
            audio_emb = embeddings[(k + 1) % len(embeddings)][1]
            n = min(len(video_emb), len(audio_emb))
            other.append(sync_scores(offset_distances(video_emb[:n], audio_emb[:n], vshift),
                                     vshift))  # fmt: skip
        out["confidence_other_audio"] = float(np.mean([s.confidence for s in other]))
        out["min_dist_other_audio"] = float(np.mean([s.min_dist for s in other]))
    return out


# ---------------------------------------------------------------------------------- loop
def build_syncnet(params: TrainSyncNetParams, device: torch.device) -> SyncNet:
    """A fresh SyncNet sized by ``params`` (``width``, ``size``, ``embedding``), its weights
    drawn after ``torch.manual_seed(params.seed)``, on ``device``."""
    torch.manual_seed(params.seed)
    return SyncNet(width=params.width, size=params.size, embedding=params.embedding).to(device)


def train_syncnet(model: SyncNet, clips: Sequence[SyncClip], params: TrainSyncNetParams,
                  checkpoint_dir: str | Path, run_id: str,
                  logger: Any | None = None) -> LoopResult:  # fmt: skip
    """Train (or resume) ``model`` on ``clips`` up to ``params.steps`` (steps 1-5 above).

    Args:
        model: freshly built (seeded) :class:`SyncNet` whose ``size`` is the crops' side; its
            weights are replaced by the checkpoint's when resuming. Left in eval mode.
        clips: training clips.
        params: ``min_shift``, ``max_shift``, ``margin``, ``steps``, ``batch_size`` (pairs per
            step, half in sync), ``lr``, ``weight_decay``, ``save_every``,
            ``keep_checkpoints``, ``log_every``, ``seed``.
        checkpoint_dir: folder of ``step-*`` checkpoints.
        run_id: :func:`~pipeline.training.resume.fingerprint` of the run; checkpoints of
            other runs are moved aside, not resumed.
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``.
    """
    sizes = {c.crops.shape[1:] for c in clips}
    if sizes - {(model.size, model.size, 3)}:
        raise ValueError(f"crops must be ({model.size}, {model.size}, 3) for this SyncNet, "
                         f"got {sorted(sizes)}")  # fmt: skip
    sampler = PairSampler(clips, params.min_shift, params.max_shift)
    pairs = max(params.batch_size // 2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    settings = LoopSettings(
        name="syncnet", steps=params.steps, seed=params.seed, save_every=params.save_every,
        keep_checkpoints=params.keep_checkpoints, log_every=params.log_every,
    )  # fmt: skip
    device = next(model.parameters()).device

    def step_losses(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # 1-2. the pairs of this step (the sampler seeds itself from (seed, step))
        picks = sampler.draw(step, pairs, params.seed)
        video, synced, shifted = (t.to(device) for t in pair_batch(clips, picks))
        # 3-4. distances and loss
        loss, d_sync, d_off = pair_losses(model, video, synced, shifted, params.margin)
        d_sync, d_off = d_sync.detach(), d_off.detach()
        return {"loss": loss, "distance_in_sync": d_sync.mean(),
                "distance_off_sync": d_off.mean(),
                "pair_accuracy": (d_sync < d_off).float().mean()}  # fmt: skip

    loop = TrainingLoop(TrainingState(model, optimizer), settings, checkpoint_dir, run_id, logger)
    result = loop.run(step_losses)
    model.eval()
    return result


__all__ = [
    "PairSampler", "SyncClip", "build_sync_clips", "build_syncnet", "contrastive_loss",
    "offset_accuracy", "pair_batch", "pair_losses", "train_syncnet", "valid_shifts",
]  # fmt: skip
