"""Batches of PCE pairs for the sync classifiers (Section 4.1.3, Fig. 5).

A batch holds ``k`` real windows with their own audio (label 1) and the ``k`` negatives of the
same windows with the audio that drove them (label 0), all of one length ``L`` (so the UNet sees
no padded frames). Step ``s`` draws its length and windows from ``(seed, s)`` only: a resumed run
sees what the uninterrupted one would have.

With ``real_negative_prob > 0`` (a sample-profile departure; the paper's negatives are all
generated) each negative is, with that probability, replaced by its real window heard with audio
from elsewhere: the same clip's audio starting at least ``min_shift`` frames away, or, when the
clip is too short for that, a window of another clip. A generator whose videos differ from real
ones by their looks lets a classifier separate the pairs without listening; these negatives
differ from the positives by the audio alone.

The mismatched-pair check uses real windows only: the window with its own audio (label 1)
against the same window with its clip's audio shifted by ``shift`` frames, or with the audio of
another clip (label 0). :func:`load_audio_features` reads the audio features the pairs need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.data.windows import load_latents
from pipeline.errors import InputError
from pipeline.io import tables


def load_audio_features(index: pd.DataFrame, features: str | os.PathLike) -> dict[str, np.ndarray]:
    """Audio features ``(T, A)`` of every clip the pairs ``index`` name (the positives' and the
    negatives' audio), by clip id, from ``features/extract.parquet``'s ``ok`` rows.

    Raises :class:`~pipeline.errors.InputError` naming the folder and the clips without
    features.
    """
    features = Path(features)
    status = tables.read_table(features / "extract.parquet", tables.EXTRACT)
    paths = status[status["status"] == "ok"].set_index("clip_id")["audio_features"]
    wanted = sorted(set(index["clip_id"]) | set(index["audio_clip_id"]))
    missing = [c for c in wanted if c not in paths.index]
    if missing:
        raise InputError(f"{features}: no audio features for clips {missing}")
    return {c: np.load(paths[c]) for c in wanted}


@dataclass
class PairBatch:
    """Classifier inputs before noising.

    Attributes:
        latents: ``(B, L, C, h, w)`` clean video latents.
        audio: ``(B, L, A)`` per-frame audio features.
        face_boxes: ``(B, 4)`` normalised face boxes (NaN: none).
        labels: ``(B,)`` 1 for in-sync real pairs, 0 otherwise.
    """

    latents: torch.Tensor
    audio: torch.Tensor
    face_boxes: np.ndarray
    labels: torch.Tensor


class PairData:
    """The pairs of one split of ``data/negatives/index.parquet`` with their audio features.

    Args:
        index: rows of the ``PAIRS`` table (one split).
        audio: clip id -> ``(n_frames, A)`` audio features of every clip the rows name.
        cache: keep loaded latents in memory (the sample profile); off for large corpora.
    """

    def __init__(self, index: pd.DataFrame, audio: dict[str, np.ndarray], cache: bool = True):
        if index.empty:
            raise ValueError("no pairs in this split")
        self.index = index.sort_values("window_id").reset_index(drop=True)
        self.audio = audio
        self.cache = cache
        self._latents: dict[str, torch.Tensor] = {}
        self.by_length = {int(k): g.index.to_numpy() for k, g in self.index.groupby("length")}

    def latents(self, path: str) -> torch.Tensor:
        if not self.cache:
            return load_latents(path)
        if path not in self._latents:
            self._latents[path] = load_latents(path)
        return self._latents[path]

    def audio_window(self, clip_id: str, start: int, length: int) -> torch.Tensor:
        features = self.audio[clip_id]
        if start < 0 or start + length > len(features):
            raise ValueError(f"audio window {start}..{start + length} outside clip {clip_id} "
                             f"({len(features)} frames)")  # fmt: skip
        return torch.from_numpy(features[start : start + length].astype(np.float32))

    def pairs(self, rows: pd.DataFrame) -> PairBatch:
        """Positives then negatives of ``rows`` (all of one length)."""
        latents = [self.latents(p) for p in rows["positive_path"]]
        latents += [self.latents(p) for p in rows["negative_path"]]
        audio = [self.audio_window(r.clip_id, r.start, r.length) for r in rows.itertuples()]
        audio += [self.audio_window(r.audio_clip_id, r.audio_start, r.length)
                  for r in rows.itertuples()]  # fmt: skip
        boxes = np.concatenate([np.stack(rows["positive_face_box"].to_numpy()),
                                np.stack(rows["negative_face_box"].to_numpy())])  # fmt: skip
        labels = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows))])
        return PairBatch(torch.stack(latents), torch.stack(audio), boxes, labels)

    def away_audio(self, clip_id: str, start: int, length: int, min_shift: int,
                   rng: np.random.Generator) -> tuple[str, int]:  # fmt: skip
        """An audio window ``(clip, start)`` of ``length`` frames that is not the window's own.

        Uniform over the clip's starts at least ``min_shift`` frames from ``start``; when there
        are none, uniform over the windows of the other clips long enough.
        """
        n = len(self.audio[clip_id])
        starts = [s for s in range(n - length + 1) if abs(s - start) >= min_shift]
        if starts:
            return clip_id, int(starts[rng.integers(len(starts))])
        others = sorted(c for c, a in self.audio.items() if c != clip_id and len(a) >= length)
        if not others:
            raise InputError(f"no audio of {length} frames other than clip {clip_id}'s own")
        other = others[rng.integers(len(others))]
        return other, int(rng.integers(len(self.audio[other]) - length + 1))

    def draw(
        self, step: int, batch_size: int, seed: int, real_negative_prob: float = 0.0,
        min_shift: int = 1, stream: int = 0,
    ) -> tuple[pd.DataFrame, dict[int, tuple[str, int]]]:  # fmt: skip
        """The random choices of step ``step``, from the ``(seed, step)`` stream only, nothing
        loaded: the ``batch_size / 2`` windows (rows, all of one length, drawn in proportion to
        its windows) and, per window position ``j`` whose negative is its real window, the
        ``(clip, start)`` of the audio it is heard with (:meth:`away_audio`). ``stream > 0``
        draws from the independent ``(seed, step, stream)`` stream instead (another consumer of
        the same steps, e.g. the correlation head's fit)."""
        rng = np.random.default_rng([seed, step] if stream == 0 else [seed, step, stream])
        lengths = sorted(self.by_length)
        counts = np.array([len(self.by_length[n]) for n in lengths], dtype=np.float64)
        length = lengths[rng.choice(len(lengths), p=counts / counts.sum())]
        pool = self.by_length[length]
        k = batch_size // 2
        rows = self.index.loc[rng.choice(pool, size=k, replace=len(pool) < k)]
        away: dict[int, tuple[str, int]] = {}
        if real_negative_prob > 0:  # 0 draws nothing more: the batches of a run without it
            for j in np.flatnonzero(rng.random(k) < real_negative_prob):
                row = rows.iloc[j]
                away[int(j)] = self.away_audio(row.clip_id, int(row.start), length, min_shift,
                                               rng)  # fmt: skip
        return rows, away

    def training_batch(
        self, step: int, batch_size: int, seed: int, real_negative_prob: float = 0.0,
        min_shift: int = 1, stream: int = 0,
    ) -> PairBatch:  # fmt: skip
        """The pairs of :meth:`draw`'s windows; a negative drawn as real is its real window heard
        with the drawn audio (at least ``min_shift`` frames off its own)."""
        rows, away = self.draw(step, batch_size, seed, real_negative_prob, min_shift, stream)
        batch = self.pairs(rows)
        k, length = len(rows), int(rows["length"].iloc[0])
        for j, (clip, start) in away.items():
            batch.latents[k + j] = batch.latents[j]
            batch.audio[k + j] = self.audio_window(clip, start, length)
            batch.face_boxes[k + j] = batch.face_boxes[j]
        return batch

    def evaluation_batches(self, batch_size: int) -> list[PairBatch]:
        """Every pair once, in window order, ``batch_size / 2`` windows of one length per batch."""
        out = []
        for length in sorted(self.by_length):
            rows = self.index.loc[self.by_length[length]]
            for i in range(0, len(rows), max(1, batch_size // 2)):
                out.append(self.pairs(rows.iloc[i : i + max(1, batch_size // 2)]))
        return out

    def mismatched_batches(self, shift: int, batch_size: int, seed: int) -> dict[str, list]:
        """Real windows with their own audio (1) against mismatched audio (0), per kind.

        ``shifted``: the same clip's audio ``shift`` frames later (earlier when the clip ends
        too soon; windows with room for neither are left out). ``other_clip``: a window of
        another clip's audio of the same length, drawn with ``seed``.
        """
        rng = np.random.default_rng([seed, 99])
        clip_ids = sorted(set(self.index["clip_id"]))
        out: dict[str, list] = {"shifted": [], "other_clip": []}
        for length in sorted(self.by_length):
            rows = self.index.loc[self.by_length[length]]
            for kind in out:
                keep, starts, clips = [], [], []
                for r in rows.itertuples():
                    if kind == "shifted":
                        n = len(self.audio[r.clip_id])
                        if r.start + shift + length <= n:
                            start = r.start + shift
                        elif r.start - shift >= 0:
                            start = r.start - shift
                        else:
                            continue
                        clip = r.clip_id
                    else:
                        others = [c for c in clip_ids
                                  if c != r.clip_id and len(self.audio[c]) >= length]  # fmt: skip
                        if not others:
                            continue
                        clip = others[rng.integers(len(others))]
                        start = int(rng.integers(len(self.audio[clip]) - length + 1))
                    keep.append(r.Index)
                    starts.append(start)
                    clips.append(clip)
                step = max(1, batch_size // 2)
                for i in range(0, len(keep), step):
                    part = self.index.loc[keep[i : i + step]]
                    real = torch.stack([self.latents(p) for p in part["positive_path"]])
                    own = [self.audio_window(r.clip_id, r.start, r.length)
                           for r in part.itertuples()]  # fmt: skip
                    wrong = [self.audio_window(c, s, length)
                             for c, s in zip(clips[i : i + step], starts[i : i + step],
                                             strict=True)]  # fmt: skip
                    boxes = np.stack(part["positive_face_box"].to_numpy())
                    out[kind].append(PairBatch(
                        torch.cat([real, real]), torch.stack(own + wrong),
                        np.concatenate([boxes, boxes]),
                        torch.cat([torch.ones(len(part)), torch.zeros(len(part))]),
                    ))  # fmt: skip
        return out


__all__ = ["PairBatch", "PairData"]
