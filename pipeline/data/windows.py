"""Training windows of the curated corpus for UniVDM (and later the PCE classifiers).

A window is ``t`` consecutive frames of one training clip with everything the model and PAR
need. Item ``i`` is fully determined by ``(seed, i)``, so training step ``s`` always sees items
``s * batch ... s * batch + batch - 1``: a resumed run continues with exactly the data it would
have seen, and no loader state needs saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.images import frames_to_images
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.media import read_frames
from pipeline.keypoints import N_KEYPOINTS
from pipeline.par import ParMasks, par_weights, part_areas, scaled_radius

AREAS = ("hand", "face", "body")


class NoClipsError(InputError):
    """No clip of the asked split qualifies (kept, extracted, long enough)."""


@dataclass(frozen=True)
class ClipRecord:
    """One training clip: its frames on disk, poses (clip pixels) and audio features."""

    clip_id: str
    path: str
    audio_path: str
    n_frames: int
    width: int
    poses: np.ndarray  # (n_frames, 133, 3)
    audio: np.ndarray  # (n_frames, A)


def audio_windows(features: torch.Tensor, start: int, frames: int, m: int) -> torch.Tensor:
    """``A(f) = concat(A(f-m) ... A(f+m))`` for ``f`` in ``[start, start + frames)``.

    Args:
        features: ``(N, A)`` per-video-frame audio features of a clip.
        start: first video frame of the window.
        frames: number of video frames.
        m: context frames each side; indices outside ``[0, N)`` repeat the edge frame.

    Returns:
        ``(frames, 2m + 1, A)``; row ``f`` holds features ``f-m ... f+m`` in order.
    """
    n = features.shape[0]
    centres = torch.arange(start, start + frames)[:, None]
    offsets = torch.arange(-m, m + 1)[None, :]
    index = (centres + offsets).clamp(0, n - 1)
    return features[index]


def load_latents(path: str | Path) -> torch.Tensor:
    """A stored ``(L, C, h, w)`` latent video as float32."""
    return torch.from_numpy(np.load(path).astype(np.float32))


def load_clip_records(curated: str | Path, features: str | Path, split: str = "train",
                      min_frames: int = 1,
                      sources: Sequence[str] | None = None) -> list[ClipRecord]:  # fmt: skip
    """The kept clips of ``split`` with extracted poses and audio, in clip-id order; only those
    of the corpus ``sources`` named (None: every source).

    Raises :class:`NoClipsError` naming the table when no clip qualifies.
    """
    features = Path(features)
    clips = tables.read_table(curated, tables.CURATED)
    status = tables.read_table(features / "extract.parquet", tables.EXTRACT)
    pose = tables.read_table(features / "pose.parquet", tables.POSE)
    ok = status[status["status"] == "ok"].set_index("clip_id")
    chosen = clips[clips["kept"] & (clips["split"] == split) & clips["clip_id"].isin(ok.index)]
    if sources is not None:
        chosen = chosen[chosen["source"].isin(list(sources))]
    records = []
    for row in chosen.sort_values("clip_id").itertuples():
        n = int(ok.at[row.clip_id, "n_frames"])
        if n < min_frames:
            continue
        frames = pose[pose["clip_id"] == row.clip_id].sort_values("frame")
        poses = np.stack(frames["keypoints"].to_numpy()).reshape(-1, N_KEYPOINTS, 3)
        audio = np.load(ok.at[row.clip_id, "audio_features"])
        if len(poses) != n or len(audio) != n:
            raise InputError(f"{features}: clip {row.clip_id} has {len(poses)} poses and "
                             f"{len(audio)} audio rows for {n} frames")  # fmt: skip
        records.append(
            ClipRecord(row.clip_id, row.path, row.audio_path, n, int(row.width), poses, audio)
        )
    if not records:
        among = f" of sources {list(sources)}" if sources is not None else ""
        raise NoClipsError(f"{curated}: no kept '{split}' clip{among} with >= {min_frames} "
                           "extracted frames")  # fmt: skip
    return records


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 -> ``(T, size, size, 3)`` uint8 (area interpolation)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


class WindowDataset(Dataset):
    """Random training windows ``(video, reference, audio, PAR weights, areas)``.

    Each item is a dict; besides the frames, reference and audio windows it supplies
    ``par_weights`` ``(t, W, W)``, the PAR masks of Eq. 2-3 (:func:`pipeline.par.par_weights`)
    at the mask resolution, which the trainer area-averages to the latent grid, and the part
    areas for the per-area losses.

    Args:
        records: clips from :func:`load_clip_records`.
        size: frame side in pixels after resizing.
        frames: window length ``t``.
        audio_context: ``m`` of the audio windows.
        par: the PAR masks' knobs (whether PAR is enabled is the trainer's: it picks the loss).
        first_frame_prob: probability that the item is first-frame conditioned.
        seed: with the item index, determines every random choice.
        length: nominal dataset length (items are drawn, not enumerated).
        cache_bytes: decoded, resized clips are kept in memory up to this budget.
    """

    def __init__(self, records: list[ClipRecord], size: int, frames: int, audio_context: int,
                 par: ParMasks, first_frame_prob: float, seed: int, length: int = 10**9,
                 cache_bytes: int = 1 << 30):  # fmt: skip
        usable = [r for r in records if r.n_frames >= frames]
        if not usable:
            raise ValueError(f"no training clip has the {frames} frames of one window")
        self.records, self.size, self.frames = usable, size, frames
        self.audio_context, self.par = audio_context, par
        self.first_frame_prob, self.seed, self.length = first_frame_prob, seed, length
        self.cache_bytes = cache_bytes
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _frames(self, record: ClipRecord, indices: list[int]) -> np.ndarray:
        cached = self._cache.get(record.clip_id)
        if cached is not None:
            return cached[indices]
        clip_bytes = record.n_frames * self.size * self.size * 3
        used = sum(a.nbytes for a in self._cache.values())
        if used + clip_bytes <= self.cache_bytes:
            self._cache[record.clip_id] = resize_frames(read_frames(record.path), self.size)
            return self._cache[record.clip_id][indices]
        return resize_frames(read_frames(record.path, indices), self.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        record = self.records[rng.integers(len(self.records))]
        start = int(rng.integers(record.n_frames - self.frames + 1))
        reference = int(rng.integers(record.n_frames))  # "random reference frame" of the clip
        window = list(range(start, start + self.frames))
        pixels = self._frames(record, [reference, *window])
        # PAR masks at the clip's own resolution (finer discs), area-averaged to latent size
        # by the trainer; r and sigma scale with that resolution.
        poses = record.poses[window]
        mask_size = record.width
        weights = par_weights(poses, mask_size, self.par)  # (t, W, W)
        radius = scaled_radius(mask_size, self.par.radius_at_512)
        areas = np.zeros((len(AREAS), self.frames, mask_size, mask_size), dtype=bool)
        for f, pose in enumerate(poses):
            found = part_areas(pose[:, :2], pose[:, 2], mask_size, self.par.tau, radius)
            for a, name in enumerate(AREAS):
                areas[a, f] = found[name]
        audio = torch.from_numpy(record.audio.astype(np.float32))
        return {
            "video": frames_to_images(pixels[1:]),  # (t, 3, S, S) in [-1, 1]
            "reference": frames_to_images(pixels[:1])[0],  # (3, S, S)
            "audio": audio_windows(audio, start, self.frames, self.audio_context),  # (t, W, A)
            "par_weights": torch.from_numpy(np.asarray(weights, dtype=np.float32)),  # (t, W, W)
            "areas": torch.from_numpy(areas),  # (3, t, W, W) hand, face, body at clip size W
            "first_frame": torch.tensor(rng.random() < self.first_frame_prob),
        }
