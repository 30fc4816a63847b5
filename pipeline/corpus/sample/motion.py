"""Audio-driven motion of a sample speaker and the ground-truth keypoint scores.

The motion is a deterministic function of the speech track and a seeded generator, built so
that audio-visual synchrony is learnable from the rendered corpus:

- mouth opening follows the per-video-frame RMS envelope of the speech; lip spreading follows
  the zero-crossing rate (fricatives and /i/ are "wider" than /o/);
- speech onsets (librosa onset detection, the same detector the BAS metric uses) trigger head
  nods, brow raises and hand beats whose *extremum* lies on the onset, so the hand's speed has
  a local minimum there (a motion beat);
- hands rise to chest height while speaking and sink while silent; each speaker has its own
  :class:`GestureStyle` (which hand beats, how far, how much sideways);
- idle sway, breathing and random blinks keep silent stretches alive.

All lengths are fractions of the frame side; times are seconds; arrays have one row per video
frame (``T`` frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline import keypoints as kp
from pipeline.io.audio import frame_rms

from .figure import Controls, Figure, points_in_polygon


@dataclass(frozen=True)
class GestureStyle:
    """How a speaker moves. Probabilities pick the hand(s) of each beat."""

    right_prob: float = 0.5  # a one-handed beat uses the right hand with this probability
    both_prob: float = 0.3  # probability that a beat uses both hands
    beat_amp: float = 0.06  # wrist displacement of a full-strength beat
    lateral: float = 0.4  # sideways share of a beat's displacement (outward positive)
    raise_amp: float = 0.06  # how far the wrists rise while speaking
    rest_x: float = 0.16  # wrist distance from the midline at rest
    rest_y: float = 0.84  # wrist height at rest
    nod: float = 0.012  # head nod at a full-strength onset
    sway: float = 0.008  # idle sway of head and body
    front_hand: str = "right"  # the hand drawn in front when they overlap


# ------------------------------------------------------------------ audio features
def frame_zcr(audio: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """Zero-crossing rate per video frame, shape ``(T,)`` (crossings per sample)."""
    edges = np.round(np.arange(n_frames + 1) * sr / fps).astype(np.int64)
    signs = np.zeros(int(edges[-1]), np.int8)
    n = min(len(audio), len(signs))
    signs[:n] = np.sign(audio[:n]).astype(np.int8)
    # crossings[k]: sign changes among samples 0..k.
    crossings = np.concatenate([[0], np.cumsum(np.diff(signs.astype(np.int16)) != 0)])
    counts = np.maximum(np.diff(edges), 1)
    return np.diff(crossings[np.minimum(edges, len(crossings) - 1)]) / counts


def mouth_opening(rms: np.ndarray) -> np.ndarray:
    """Mouth opening ``(T,)`` in 0..1 from the RMS envelope (loud speech = wide open)."""
    speech = rms[rms > 0.1 * rms.max()] if rms.max() > 0 else rms
    ref = np.percentile(speech, 90) if speech.size else 1.0
    level = np.clip((rms / max(ref, 1e-6) - 0.06) / 0.94, 0, 1) ** 0.6
    # A light smoothing: lips cannot jump fully open in one frame.
    return np.convolve(np.pad(level, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def speech_onsets(
    audio: np.ndarray,
    sr: int,
    fps: float,
    n_frames: int,
    active: np.ndarray,
    min_gap_s: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Speech onsets as ``(frame_index, strength)`` arrays; strength in 0.3..1.

    Onsets come from librosa's spectral-flux detector; those outside speech (``active`` False)
    are dropped, and of two onsets closer than ``min_gap_s`` the stronger is kept.
    """
    import librosa  # imported here: librosa is slow to import and only motion needs it

    hop = 160
    envelope = librosa.onset.onset_strength(y=audio.astype(np.float32), sr=sr, hop_length=hop)
    peaks = librosa.onset.onset_detect(
        onset_envelope=envelope, sr=sr, hop_length=hop, units="frames"
    )
    frames = np.round(peaks * hop / sr * fps).astype(int)
    strength = envelope[peaks] / max(float(envelope.max()), 1e-9)
    keep = (frames >= 0) & (frames < n_frames)
    frames, strength = frames[keep], strength[keep]
    keep = active[frames]
    frames, strength = frames[keep], strength[keep]
    chosen: list[int] = []
    for i in np.argsort(-strength, kind="stable"):
        if all(abs(frames[i] - frames[j]) >= min_gap_s * fps for j in chosen):
            chosen.append(int(i))
    chosen.sort(key=lambda i: frames[i])
    frames, strength = frames[chosen], strength[chosen]
    if len(strength):
        # Relative to a robust maximum, so one very strong onset does not flatten the rest.
        reference = max(float(np.percentile(strength, 80)), 1e-9)
        strength = 0.3 + 0.7 * np.clip(strength / reference, 0, 1)
    return frames, strength


# ------------------------------------------------------------------ smooth signals
def smooth_noise(
    rng: np.random.Generator, t: np.ndarray, lo_hz: float = 0.05, hi_hz: float = 0.4, n: int = 4
) -> np.ndarray:
    """Unit-scale smooth random motion ``(T,)``: a sum of sinusoids with random rates/phases."""
    freqs = rng.uniform(lo_hz, hi_hz, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.5, 1.0, n)
    out = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return out / np.sqrt((amps**2).sum() / 2)


def _bumps(t: np.ndarray, centers: np.ndarray, heights: np.ndarray, sigma: float) -> np.ndarray:
    """Sum of Gaussian bumps ``(T,)`` peaking at ``centers`` (seconds) with ``heights``."""
    if len(centers) == 0:
        return np.zeros_like(t)
    return (heights[:, None] * np.exp(-0.5 * ((t[None] - centers[:, None]) / sigma) ** 2)).sum(0)


def phrase_offsets(
    rng: np.random.Generator,
    t: np.ndarray,
    n: int,
    scale: float,
    min_s: float = 1.5,
    max_s: float = 3.0,
) -> np.ndarray:
    """Smooth piecewise-constant offsets ``(T, n)``: a new random value every 1.5-3 s.

    Gives each stretch of speech its own hand placement (closer, wider, one hand higher) so
    poses vary between phrases; the 0.25 s Gaussian smoothing makes the changes glide.
    """
    out = np.zeros((len(t), n))
    start = 0.0
    while start <= t[-1]:
        end = start + rng.uniform(min_s, max_s)
        out[(t >= start) & (t < end)] = rng.uniform(-scale, scale, n)
        start = end
    dt = t[1] - t[0] if len(t) > 1 else 1.0
    half = max(int(round(0.75 / dt)), 1)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * dt / 0.25) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(out, ((half, half), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(n)], axis=1)


def blinks(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Eye openness ``(T,)``: 1 open, dipping to 0 in ~0.2 s blinks every 2-5 s."""
    openness = np.ones_like(t)
    start = rng.uniform(0.3, 2.0)
    while start < t[-1] + 1:
        # Fast close (80 ms), slower reopening (140 ms), as in real blinks.
        d = t - start
        closing = (d >= 0) & (d < 0.08)
        opening = (d >= 0.08) & (d < 0.22)
        openness[closing] = np.minimum(openness[closing], 1 - d[closing] / 0.08)
        openness[opening] = np.minimum(openness[opening], (d[opening] - 0.08) / 0.14)
        start += rng.uniform(2.0, 5.0)
    return openness


# ------------------------------------------------------------------ controls
@dataclass
class Motion:
    """Per-frame controls plus the signals they came from (for tests and diagnostics)."""

    controls: list[Controls]
    rms: np.ndarray  # (T,)
    mouth: np.ndarray  # (T,)
    speaking: np.ndarray  # (T,) 0..1
    onset_frames: np.ndarray  # (K,)
    onset_strength: np.ndarray  # (K,)


def audio_motion(
    audio: np.ndarray,
    sr: int,
    fps: float,
    n_frames: int,
    style: GestureStyle,
    rng: np.random.Generator,
) -> Motion:
    """Drive a speaker from its speech track: one :class:`Controls` per video frame."""
    t = np.arange(n_frames) / fps
    rms = frame_rms(audio, sr, fps, n_frames)
    mouth = mouth_opening(rms)
    # Speaking level: mouth activity spread over +-0.35 s, so hands stay up between words.
    window = max(int(round(0.35 * fps)), 1)
    active = np.convolve((mouth > 0.08).astype(float), np.ones(2 * window + 1), mode="same") > 0
    speaking = np.convolve(active.astype(float), np.ones(window) / window, mode="same")
    speaking = speaking * speaking * (3 - 2 * speaking)  # smoothstep: ease in and out
    zcr = frame_zcr(audio, sr, fps, n_frames)
    # Lips spread on high zero-crossing sounds (s, i) and round on low ones, only when open.
    typical = float(np.median(zcr[active])) if active.any() else 0.0
    wide = np.clip((zcr - typical) * 25, -1, 1) * mouth

    onset_frames, strength = speech_onsets(audio, sr, fps, n_frames, active)
    onset_t = onset_frames / fps
    n_on = len(onset_t)
    # Which hands beat: both, or one chosen by the speaker's handedness.
    both = rng.random(n_on) < style.both_prob
    right = rng.random(n_on) < style.right_prob
    use_r = (both | right).astype(float)
    use_l = (both | ~right).astype(float)
    sign = np.where(rng.random(n_on) < 0.7, 1.0, -1.0)  # mostly outward, sometimes inward
    sigma_hand, sigma_head = 0.085, 0.12
    beat_r = _bumps(t, onset_t, strength * use_r, sigma_hand)
    beat_l = _bumps(t, onset_t, strength * use_l, sigma_hand)
    side_r = _bumps(t, onset_t, strength * use_r * sign, sigma_hand)
    side_l = _bumps(t, onset_t, strength * use_l * sign, sigma_hand)
    nod = _bumps(t, onset_t + 0.02, strength, sigma_head)
    roll_kick = _bumps(t, onset_t, strength * rng.uniform(-1, 1, n_on), 0.2)
    brow = _bumps(t, onset_t, strength * (strength > 0.7), 0.18)

    breath = np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    sway_x, sway_y = smooth_noise(rng, t), smooth_noise(rng, t)
    yaw, roll = smooth_noise(rng, t, 0.05, 0.25), smooth_noise(rng, t, 0.05, 0.3)
    drift = [smooth_noise(rng, t, 0.1, 0.5) for _ in range(4)]
    tilt = [smooth_noise(rng, t, 0.1, 0.4) for _ in range(2)]
    gaze_x, gaze_y = smooth_noise(rng, t, 0.1, 0.6), smooth_noise(rng, t, 0.1, 0.6)
    eyes = blinks(rng, t)
    home = phrase_offsets(rng, t, 4, 0.035) * speaking[:, None]

    # Wrist targets (T, 2): rest pose, raised and a little apart while speaking, pushed down
    # (and sideways) by beats, drifting slowly, placed per phrase.
    amp, lat = style.beat_amp, style.beat_amp * style.lateral
    height = style.rest_y - style.raise_amp * speaking
    apart = style.rest_x + 0.02 * speaking
    wrist_r = np.stack(
        [
            0.5 - apart - lat * side_r + 0.01 * drift[0] + home[:, 0],
            height + amp * beat_r + 0.01 * drift[1] + home[:, 1],
        ],
        axis=1,
    )
    wrist_l = np.stack(
        [
            0.5 + apart + lat * side_l + 0.01 * drift[2] + home[:, 2],
            height + amp * beat_l + 0.01 * drift[3] + home[:, 3],
        ],
        axis=1,
    )
    head_dy = style.nod * nod + 0.002 * breath
    head_roll = 0.03 * roll + 0.03 * roll_kick
    shrug = 0.004 * breath + 0.004 * (beat_r + beat_l)
    controls = [
        Controls(
            head_dx=float(style.sway * sway_x[i]),
            head_dy=float(head_dy[i]),
            head_roll=float(head_roll[i]),
            head_yaw=float(0.35 * yaw[i]),
            mouth_open=float(mouth[i]),
            mouth_wide=float(wide[i]),
            eye_open=float(eyes[i]),
            brow=float(np.clip(0.8 * brow[i], 0, 1)),
            gaze_x=float(0.3 * gaze_x[i]),
            gaze_y=float(0.2 * gaze_y[i]),
            body_dx=float(0.4 * style.sway * sway_y[i]),
            body_dy=float(0.003 * breath[i]),
            shrug=float(shrug[i]),
            wrist_r=(float(wrist_r[i, 0]), float(wrist_r[i, 1])),
            wrist_l=(float(wrist_l[i, 0]), float(wrist_l[i, 1])),
            # Beats open the hands outward and spread the fingers; at rest they relax.
            hand_angle_r=float(0.12 + 0.08 * tilt[0][i] + 0.3 * side_r[i]),
            hand_angle_l=float(0.12 + 0.08 * tilt[1][i] + 0.3 * side_l[i]),
            spread_r=float(0.8 + 0.5 * beat_r[i]),
            spread_l=float(0.8 + 0.5 * beat_l[i]),
            curl_r=float(0.35 * (1 - speaking[i])),
            curl_l=float(0.35 * (1 - speaking[i])),
        )
        for i in range(n_frames)
    ]
    return Motion(controls, rms, mouth, speaking, onset_frames, strength)


# ------------------------------------------------------------------ ground-truth scores
SCORE = 0.95  # a clearly visible keypoint
SCORE_EAR = 0.9
SCORE_OCCLUDED = 0.3
SCORE_MIN_FAST = 0.4  # the score of the fastest-moving points


def speed_scores(points: np.ndarray, size: int) -> np.ndarray:
    """Score factor ``(T, N)`` from each point's speed: 0.95 when still, 0.4 when fast.

    ``points`` is ``(T, N, 2)`` pixels; speed is a central difference in pixels per frame,
    measured at the 256-px scale so scores do not depend on resolution. Fast points blur in a
    real video and detectors lose them, so their ground truth is less certain too.
    """
    if len(points) < 2:
        return np.full(points.shape[:2], SCORE)
    velocity = np.gradient(points, axis=0)
    speed = np.linalg.norm(velocity, axis=-1) * (256.0 / size)
    fast = np.clip((speed - 1.5) / 4.5, 0, 1)
    return SCORE - (SCORE - SCORE_MIN_FAST) * fast


def _hand_hull(hand: np.ndarray, pad: float) -> np.ndarray:
    hull = cv2.convexHull(hand.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    center = hull.mean(axis=0)
    direction = hull - center
    norm = np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
    return (hull + pad * direction / norm).astype(np.float32)


def ground_truth(figures: list[Figure], size: int, finger_width: float) -> np.ndarray:
    """Keypoints with scores, ``(T, 133, 3)`` float32, x/y in pixels.

    Scores: 0.95 when visible and still, lower for fast points (:func:`speed_scores`), 0.3 for
    points hidden behind a hand (the face, or the hand drawn behind the other) or under the hair,
    0 (and x = y = 0) outside the frame and for the legs and feet, which an upper-body framing
    never shows.
    """
    points = np.stack([f.keypoints for f in figures])  # (T, 133, 2)
    n_frames = len(points)
    scores = speed_scores(points, size)
    body = kp.BODY_INDEX
    scores[:, [body["left_ear"], body["right_ear"]]] = np.minimum(
        scores[:, [body["left_ear"], body["right_ear"]]], SCORE_EAR
    )
    # Occlusion by the hair, and by the hands (drawn over everything): the face, the back hand.
    face_like = np.r_[np.arange(0, 5), np.arange(kp.FACE.start, kp.FACE.stop)]
    for t, fig in enumerate(figures):
        if fig.under_hair is not None:
            scores[t, fig.under_hair] = np.minimum(scores[t, fig.under_hair], SCORE_OCCLUDED)
        front = fig.front_hand
        back = "left" if front == "right" else "right"
        slices = {"left": kp.LEFT_HAND, "right": kp.RIGHT_HAND}
        for side in ("left", "right"):
            hull = _hand_hull(points[t, slices[side]], finger_width / 2)
            covered = points_in_polygon(hull, points[t, face_like])
            scores[t, face_like[covered]] = SCORE_OCCLUDED
        hull = _hand_hull(points[t, slices[front]], finger_width / 2)
        back_idx = np.r_[np.arange(slices[back].start, slices[back].stop), [body[f"{back}_wrist"]]]
        covered = points_in_polygon(hull, points[t, back_idx])
        scores[t, back_idx[covered]] = np.minimum(scores[t, back_idx[covered]], SCORE_OCCLUDED)
    hidden = np.zeros((n_frames, kp.N_KEYPOINTS), bool)
    hidden[:, 13:17] = True  # knees and ankles
    hidden[:, kp.FEET] = True
    outside = (
        (points[..., 0] < 0)
        | (points[..., 0] > size - 1)
        | (points[..., 1] < 0)
        | (points[..., 1] > size - 1)
    )
    hidden |= outside
    out = np.concatenate([points, scores[..., None]], axis=-1).astype(np.float32)
    out[hidden] = 0.0
    return out
