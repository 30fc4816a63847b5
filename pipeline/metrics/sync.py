"""Sync-C / Sync-D: the SyncNet lip-sync evaluation of ``syncnet_python`` (Chung & Zisserman 2016).

Protocol (one video; 25 fps frames, 16 kHz mono audio), as in ``SyncNetInstance.evaluate`` and
``run_pipeline.crop_video`` of the released code:

1. Face crops (:func:`face_crops`). With a face box of half-side ``bs = max(w, h) / 2`` and
   centre ``(cx, cy)``, the crop spans rows ``cy - bs .. cy + bs (1 + 2 cs)`` and columns
   ``cx - bs (1 + cs) .. cx + bs (1 + cs)`` (``cs = crop_scale``, official 0.4): a square of
   side ``2 bs (1 + cs)`` shifted down by ``cs bs`` so the mouth is well inside. Pixels outside
   the frame are grey 110 (the official padding value); the crop is resized to ``size`` (224)
   with bilinear interpolation. The box moves with the face, as in the official pipeline,
   which detects the face in every frame and smooths the track (:func:`smooth_face_track`:
   frames without a detection take the box interpolated between their neighbours', then the
   half-side and the centre are median-filtered over 13 frames, ``scipy.signal.medfilt``). The
   detector here is ``evaluate``'s MediaPipe face detector, not the official S3FD, so
   ``crop_scale`` sits on a slightly different box; one fixed box (the reference frame's) is
   what a video gets when no frame has a detected face.
2. Audio (:func:`mfcc_features`): 13 MFCCs per 10 ms exactly as ``python_speech_features.mfcc``
   with its defaults on the int16 samples of the wav (float waves in [-1, 1] are multiplied by
   32768, which restores the integers a 16-bit file holds).
3. Windows: video window ``i`` is frames ``i .. i+4`` as BGR floats in 0..255
   (:func:`video_windows`); audio window ``i`` is MFCC columns ``4i .. 4i+19``
   (:func:`audio_windows`; 4 columns per 40 ms frame). Both cover 0.2 s from ``i / 25`` s.
   As in the official code, with ``L = min(T, floor(samples / 640))`` the windows
   ``i = 0 .. L - 6`` are used (``L - 5`` windows; the last full window is left out too).
4. Embeddings of every window by the two SyncNet streams (eval mode, no gradients).
5. Distances (:func:`offset_distances`): the audio embedding sequence is padded with ``vshift``
   zero vectors at each end; for offset index ``k = 0 .. 2 vshift``,
   ``D[k] = mean_i || v_i - a_{i + k - vshift} + 1e-6 ||`` (``torch.pairwise_distance``;
   ``a_j = 0`` outside the sequence).
6. Scores (:func:`sync_scores`): ``offset = vshift - argmin_k D``, Sync-D ``= min_k D``,
   Sync-C (confidence) ``= median_k D - min_k D``.

Sign convention: ``offset > 0`` means the audio leads the video (video window ``i`` matches
audio window ``i - offset``); audio delayed by ``d`` frames gives ``offset = -d``.

Over a set of videos, Sync-C and Sync-D are the means of the per-video values
(:func:`mean_sync`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import cv2
import numpy as np
import torch
from scipy.fft import dct

from pipeline.models.syncnet import MFCC_COEFFICIENTS, MFCC_STEPS, VIDEO_FRAMES, SyncNet

SAMPLE_RATE = 16000
FPS = 25.0
MFCC_PER_FRAME = 4  # 10 ms MFCC steps per 40 ms video frame
PAD_VALUE = 110  # grey of the official crop padding
PCM16_SCALE = 32768.0
# python_speech_features.mfcc defaults
WINDOW_S, STEP_S = 0.025, 0.01
N_FILTERS, NFFT = 26, 512
PREEMPHASIS, CEP_LIFTER = 0.97, 22
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance adds it to the difference


# ---------------------------------------------------------------------------------- audio
def _round_half_up(x: float) -> int:
    return int(Decimal(x).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def hz_to_mel(hz):
    """``2595 log10(1 + hz / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """``700 (10^(mel / 2595) - 1)``."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int, nfft: int, sample_rate: int) -> np.ndarray:
    """Triangular mel filters ``(n_filters, nfft // 2 + 1)`` from 0 Hz to ``sample_rate / 2``.

    Edges: ``n_filters + 2`` points evenly spaced in mel, as FFT bins
    ``b = floor((nfft + 1) hz / sample_rate)``; filter ``j`` rises linearly from ``b[j]`` (0) to
    ``b[j+1]`` (1) and falls to ``b[j+2]`` (the right edge excluded).
    """
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_filters + 2)
    bins = np.floor((nfft + 1) * mel_to_hz(mels) / sample_rate)
    bank = np.zeros((n_filters, nfft // 2 + 1))
    for j in range(n_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rise = np.arange(int(lo), int(mid))
        fall = np.arange(int(mid), int(hi))
        bank[j, rise] = (rise - lo) / (mid - lo)
        bank[j, fall] = (hi - fall) / (hi - mid)
    return bank


def mfcc_features(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """13 MFCCs per 10 ms, ``(13, n)`` float32: ``python_speech_features.mfcc`` with defaults.

    Recipe (on int16-scale samples ``x``; float input is multiplied by 32768):

    1. pre-emphasis ``y[0] = x[0]``, ``y[t] = x[t] - 0.97 x[t-1]``;
    2. frames of 25 ms every 10 ms (``round_half_up`` of the sample counts), no window
       function; ``n = 1 + ceil((len - 400) / 160)`` at 16 kHz (1 if shorter than a frame),
       the last frame zero-padded;
    3. power spectrum ``P = |rfft(frame, 512)|^2 / 512``; energy ``E = sum P`` (0 -> eps);
    4. 26 mel filter energies ``F = P @ bank.T`` (0 -> eps), ``log F``;
    5. orthonormal DCT-II (``scipy.fft.dct(type=2, norm="ortho")``), first 13 coefficients;
       lifter ``c_k *= 1 + 11 sin(pi k / 22)``;
    6. ``c_0 = log E`` (appendEnergy).

    Args:
        wave: ``(samples,)`` mono audio: integers at 16-bit scale, or floats in [-1, 1].
        sample_rate: Hz (SyncNet expects 16000); frames are 25 ms / 10 ms at any rate.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"wave must be a non-empty 1-D array, got shape {wave.shape}")
    samples = wave.astype(np.float64)
    if not np.issubdtype(wave.dtype, np.integer):
        samples = samples * PCM16_SCALE
    if not np.isfinite(samples).all():
        raise ValueError("wave has NaN or infinite samples")
    frame_len = _round_half_up(WINDOW_S * sample_rate)
    step = _round_half_up(STEP_S * sample_rate)
    if frame_len > NFFT:
        raise ValueError(f"a 25 ms frame at {sample_rate} Hz is {frame_len} samples, more than "
                         f"the {NFFT}-point FFT; resample to {SAMPLE_RATE} Hz")  # fmt: skip
    # 1. pre-emphasis
    emphasised = np.concatenate([samples[:1], samples[1:] - PREEMPHASIS * samples[:-1]])
    # 2. framing
    n = len(emphasised)
    n_frames = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / step)
    padded = np.zeros((n_frames - 1) * step + frame_len)
    padded[:n] = emphasised
    index = np.arange(frame_len)[None, :] + step * np.arange(n_frames)[:, None]
    frames = padded[index]  # (n_frames, frame_len)
    # 3. power spectrum and energy
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2 / NFFT  # (n_frames, 257)
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    # 4. log mel energies
    filters = power @ mel_filterbank(N_FILTERS, NFFT, sample_rate).T
    filters = np.where(filters == 0, eps, filters)
    # 5. DCT and lifter
    cepstra = dct(np.log(filters), type=2, axis=1, norm="ortho")[:, :MFCC_COEFFICIENTS]
    cepstra *= 1 + (CEP_LIFTER / 2) * np.sin(np.pi * np.arange(MFCC_COEFFICIENTS) / CEP_LIFTER)
    # 6. energy replaces c0
    cepstra[:, 0] = np.log(energy)
    return cepstra.T.astype(np.float32)


# ---------------------------------------------------------------------------------- video
def crop_rectangle(box: Sequence[float], crop_scale: float) -> tuple[int, int, int, int]:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of the official face crop, in frame pixels.

    ``bs = max(x1 - x0, y1 - y0) / 2``, ``p = int(bs (1 + 2 cs))`` (the official padding); in
    the frame padded by ``p`` the crop is rows ``int(cy + p - bs) .. int(cy + p + bs (1+2cs))``
    and columns ``int(cx + p - bs (1+cs)) .. int(cx + p + bs (1+cs))`` (``int`` truncates as the
    official slicing does); ``p`` is subtracted again to give frame coordinates.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box must be finite (x0, y0, x1, y1) with x1 > x0, y1 > y0, "
                         f"got {tuple(box)}")  # fmt: skip
    if crop_scale < 0:
        raise ValueError(f"crop_scale must be >= 0, got {crop_scale}")
    bs = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pad = int(bs * (1 + 2 * crop_scale))
    my, mx = cy + pad, cx + pad
    rows = (int(my - bs) - pad, int(my + bs * (1 + 2 * crop_scale)) - pad)
    cols = (int(mx - bs * (1 + crop_scale)) - pad, int(mx + bs * (1 + crop_scale)) - pad)
    return rows[0], rows[1], cols[0], cols[1]


TRACK_MEDIAN_FRAMES = 13  # syncnet_python's median filter over the face track


def smooth_face_track(boxes: np.ndarray, kernel: int = TRACK_MEDIAN_FRAMES) -> np.ndarray:
    """The official face track of a video from per-frame detections: ``(T, 4)`` pixel boxes.

    Args:
        boxes: ``(T, 4+)`` ``[x0, y0, x1, y1, ...]`` per frame, NaN where no face was found.
        kernel: median-filter length in frames (odd; official 13).

    Frames without a face get the centre and half-side linearly interpolated between the
    nearest detected frames (held at the ends); then half-side ``s = max(w, h) / 2`` and centre
    are each median-filtered (``scipy.signal.medfilt``, zero-padded ends as there) and the box
    is ``(cx - s, cy - s, cx + s, cy + s)``. Raises ValueError when no frame has a face.
    """
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, dtype=np.float64)[:, :4]
    found = np.isfinite(boxes).all(axis=1)
    if not found.any():
        raise ValueError("no frame has a face box")
    frames = np.arange(len(boxes))
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    track = []
    for values in (size, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2):
        filled = np.interp(frames, frames[found], values[found])
        track.append(medfilt(filled, kernel) if len(filled) >= kernel else filled)
    s, cx, cy = track
    return np.stack([cx - s, cy - s, cx + s, cy + s], axis=1)


def face_crops(frames: np.ndarray, box: Sequence[float] | np.ndarray, crop_scale: float,
               size: int, pad_value: int = PAD_VALUE) -> np.ndarray:  # fmt: skip
    """Official SyncNet face crops of every frame.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        box: ``(T, 4)`` face boxes per frame (a track, :func:`smooth_face_track`) or one
            ``(x0, y0, x1, y1)`` box for every frame, in pixels of ``frames``.
        crop_scale: the box is grown by this (official 0.4), see :func:`crop_rectangle`.
        size: output side in pixels (official 224).
        pad_value: grey level of pixels outside the frame (official 110).

    Returns:
        ``(T, size, size, 3)`` uint8 RGB crops (bilinear resize, as ``cv2.resize``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if size < 1:
        raise ValueError(f"crop size must be >= 1, got {size}")
    boxes = np.asarray(box, dtype=np.float64)
    if boxes.ndim == 1:
        boxes = np.broadcast_to(boxes, (len(frames), len(boxes)))
    if boxes.shape[0] != len(frames):
        raise ValueError(f"{boxes.shape[0]} face boxes for {len(frames)} frames")
    height, width = frames.shape[1:3]
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        r0, r1, c0, c1 = crop_rectangle(boxes[t], crop_scale)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"face box {tuple(boxes[t])} gives an empty crop")
        # Copy the part inside the frame into a grey canvas of the crop's size.
        canvas = np.full((r1 - r0, c1 - c0, 3), pad_value, dtype=np.uint8)
        fr0, fr1, fc0, fc1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
        if fr1 > fr0 and fc1 > fc0:
            canvas[fr0 - r0 : fr1 - r0, fc0 - c0 : fc1 - c0] = frame[fr0:fr1, fc0:fc1]
        out[t] = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def video_windows(crops: np.ndarray) -> torch.Tensor:
    """``(N, 3, 5, S, S)`` float32 BGR windows in 0..255, ``N = T - 4``; window ``i`` = frames
    ``i .. i+4`` of ``crops`` ``(T, S, S, 3)`` uint8 RGB. A strided view: no copy is made."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops must be (T, S, S, 3), got {crops.shape}")
    if len(crops) < VIDEO_FRAMES:
        raise ValueError(f"need >= {VIDEO_FRAMES} frames for one window, got {len(crops)}")
    bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).float()  # (T, S, S, 3)
    video = bgr.permute(3, 0, 1, 2)  # (3, T, S, S)
    return video.unfold(1, VIDEO_FRAMES, 1).permute(1, 0, 4, 2, 3)  # (N, 3, 5, S, S)


def audio_windows(mfcc: np.ndarray, n: int) -> torch.Tensor:
    """``(n, 1, 13, 20)`` float32 MFCC windows; window ``i`` = columns ``4i .. 4i+19``.

    ``mfcc``: ``(13, columns)``. Columns missing at the end (audio shorter than the video) are
    zeros; :func:`sync_distances` never needs them.
    """
    mfcc = np.asarray(mfcc, dtype=np.float32)
    if mfcc.ndim != 2 or mfcc.shape[0] != MFCC_COEFFICIENTS:
        raise ValueError(f"mfcc must be ({MFCC_COEFFICIENTS}, columns), got {mfcc.shape}")
    if n < 1:
        raise ValueError(f"need >= 1 audio window, got n={n}")
    needed = MFCC_PER_FRAME * (n - 1) + MFCC_STEPS
    if mfcc.shape[1] < needed:
        mfcc = np.pad(mfcc, ((0, 0), (0, needed - mfcc.shape[1])))
    columns = torch.from_numpy(np.ascontiguousarray(mfcc[:, :needed]))
    windows = columns.unfold(1, MFCC_STEPS, MFCC_PER_FRAME)  # (13, n, 20)
    return windows.permute(1, 0, 2).unsqueeze(1)


# ---------------------------------------------------------------------------------- scores
@dataclass(frozen=True)
class SyncScores:
    """One video's result: AV ``offset`` (frames), Sync-D ``min_dist``, Sync-C ``confidence``."""

    offset: int
    min_dist: float
    confidence: float


def offset_distances(video_emb, audio_emb, vshift: int) -> np.ndarray:
    """Mean distance per offset ``(2 vshift + 1,)``, the official zero-padding convention.

    ``D[k] = mean_i || v_i - a_{i+k-vshift} + 1e-6 ||_2`` with ``a_j = 0`` for ``j`` outside
    ``0 .. N-1``; index ``k`` stands for offset ``vshift - k`` (:func:`sync_scores`).

    Args:
        video_emb, audio_emb: ``(N, E)`` embeddings of aligned windows (tensors or arrays).
        vshift: largest offset tried, in frames (official 15).
    """
    video = torch.as_tensor(video_emb, dtype=torch.float64)
    audio = torch.as_tensor(audio_emb, dtype=torch.float64)
    if video.dim() != 2 or video.shape != audio.shape or len(video) == 0:
        raise ValueError(f"embeddings must both be (N, E) with N >= 1, got "
                         f"{tuple(video.shape)} and {tuple(audio.shape)}")  # fmt: skip
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0, got {vshift}")
    n = len(video)
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))  # (N + 2 vshift, E)
    distances = [
        torch.linalg.vector_norm(video - padded[k : k + n] + PAIRWISE_EPS, dim=1).mean()
        for k in range(2 * vshift + 1)
    ]
    return torch.stack(distances).numpy()


def sync_scores(distances: np.ndarray, vshift: int) -> SyncScores:
    """``offset = vshift - argmin D``, ``min_dist = min D``, ``confidence = median D - min D``.

    ``distances``: ``(2 vshift + 1,)`` from :func:`offset_distances` (the first minimum wins
    a tie).
    """
    distances = np.asarray(distances, dtype=np.float64)
    if distances.shape != (2 * vshift + 1,):
        raise ValueError(f"distances must have shape ({2 * vshift + 1},) for vshift={vshift}, "
                         f"got {distances.shape}")  # fmt: skip
    best = int(np.argmin(distances))
    low = float(distances[best])
    return SyncScores(offset=vshift - best, min_dist=low,
                      confidence=float(np.median(distances)) - low)  # fmt: skip


@torch.no_grad()
def embed_windows(model: SyncNet, crops: np.ndarray, mfcc: np.ndarray, n: int,
                  batch_size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Embeddings ``(n, E)`` of video windows ``0..n-1`` of ``crops`` and audio windows of
    ``mfcc``, in batches, with ``model`` in eval mode (its mode is restored after)."""
    if len(crops) < n + VIDEO_FRAMES - 1:
        raise ValueError(f"{n} windows need {n + VIDEO_FRAMES - 1} frames, got {len(crops)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    audio = audio_windows(mfcc, n)
    video_out, audio_out = [], []
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            video = video_windows(crops[start : stop + VIDEO_FRAMES - 1])
            video_out.append(model.forward_video(video.to(device)).float().cpu())
            audio_out.append(model.forward_audio(audio[start:stop].to(device)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(video_out), torch.cat(audio_out)


def usable_windows(n_frames: int, n_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Official window count ``min(T, floor(samples / (sr / 25))) - 5`` (may be <= 0)."""
    per_frame = sample_rate / FPS
    return min(n_frames, int(math.floor(n_samples / per_frame))) - VIDEO_FRAMES


def sync_distances(model: SyncNet, frames: np.ndarray, wave: np.ndarray, sample_rate: int,
                   box: Sequence[float], crop_scale: float, vshift: int = 15,
                   batch_size: int = 20) -> np.ndarray:  # fmt: skip
    """Steps 1-5 of the protocol for one video: mean distance per offset ``(2 vshift + 1,)``.

    Args:
        model: a :class:`SyncNet` (its ``size`` sets the crop side).
        frames: ``(T, H, W, 3)`` uint8 RGB at 25 fps.
        wave: ``(samples,)`` mono audio at ``sample_rate`` (float in [-1, 1] or int16).
        sample_rate: must be 16000.
        box: the video's face track ``(T, 4)`` or one box ``(x0, y0, x1, y1)``, in pixels of
            ``frames`` (:func:`face_crops`).
        crop_scale: official 0.4.
        vshift: offsets ``-vshift .. vshift`` frames are tried (official 15).
        batch_size: windows per forward pass.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"SyncNet audio must be {SAMPLE_RATE} Hz, got {sample_rate}")
    n = usable_windows(len(frames), len(wave), sample_rate)
    if n < 1:
        raise ValueError(f"video too short for SyncNet: {len(frames)} frames and "
                         f"{len(wave) / sample_rate:.2f} s of audio give no 5-frame window "
                         "(need >= 6 frames of both)")  # fmt: skip
    crops = face_crops(frames, box, crop_scale, model.size)
    video_emb, audio_emb = embed_windows(model, crops, mfcc_features(wave, sample_rate), n,
                                         batch_size)  # fmt: skip
    return offset_distances(video_emb, audio_emb, vshift)


def evaluate_sync(model: SyncNet, frames: np.ndarray, wave: np.ndarray, sample_rate: int,
                  box: Sequence[float], crop_scale: float, vshift: int = 15,
                  batch_size: int = 20) -> SyncScores:  # fmt: skip
    """Sync-C / Sync-D of one video (the whole protocol); arguments as :func:`sync_distances`."""
    distances = sync_distances(model, frames, wave, sample_rate, box, crop_scale, vshift,
                               batch_size)  # fmt: skip
    return sync_scores(distances, vshift)


def mean_sync(scores: Sequence[SyncScores]) -> dict[str, float | int]:
    """Means over videos: ``sync_c`` (confidence), ``sync_d`` (min distance), ``abs_offset``
    (mean |offset|, frames) and the number of ``videos``."""
    if not scores:
        raise ValueError("mean_sync needs at least one video's scores")
    return {
        "sync_c": float(np.mean([s.confidence for s in scores])),
        "sync_d": float(np.mean([s.min_dist for s in scores])),
        "abs_offset": float(np.mean([abs(s.offset) for s in scores])),
        "videos": len(scores),
    }


__all__ = [
    "SyncScores", "audio_windows", "crop_rectangle", "embed_windows",
    "evaluate_sync", "face_crops", "mean_sync", "mel_filterbank", "mfcc_features",
    "offset_distances", "smooth_face_track", "sync_distances", "sync_scores", "usable_windows",
    "video_windows",
]  # fmt: skip
