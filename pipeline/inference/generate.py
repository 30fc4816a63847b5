"""The ``infer`` stage's work: every test clip generated from its first frame and its audio.

For one guidance mode (``none``, ``sg`` or ``dg``; Section 4.2, Algorithm 1) each test clip gets
an mp4 with its own audio, its latents (``.npy``, what the metrics decode) and the sampling time
per segment. The initial noise of a clip depends on the clip id and ``infer.seed`` only
(:func:`~pipeline.inference.animator.clip_seed`), the same in every mode (a paired comparison)
and however the clips are split into shards, so a split changes no pixel.

The test clips are cut into shards round robin and written / merged by
:mod:`pipeline.io.shards`: each shard is tagged with the plan fingerprint
(:meth:`InferPlan.fingerprint`: the clips, the mode, the seed, the :class:`AnimatorSettings`
and digests of the model folders), a complete shard of the same plan is kept, and the merge
refuses missing shards and shards of another plan. A clip that cannot be generated gets a row
with the reason (``status`` ``failed``); such a shard is merged but redone on the next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.data.face_boxes import face_box_at, normalised_face_boxes
from pipeline.data.windows import ClipRecord, load_clip_records, resize_frames
from pipeline.inference.animator import Animator, AnimatorSettings, clip_seed
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.media import read_frames, write_video
from pipeline.io.outputs import final_path
from pipeline.models.device import CPU

log = logging.getLogger("paha.infer")

CLASSIFIER_KINDS = ("face", "nonface")


def load_test_records(curated: str | Path, features: str | Path,
                 max_clips: int | None = None) -> list[ClipRecord]:  # fmt: skip
    """The test clips generated, in clip-id order (the order shards are cut from): the first
    ``max_clips`` (all when None). Raises :class:`~pipeline.errors.NoClipsError` without any."""
    records = load_clip_records(curated, features, "test", min_frames=1)
    return records if max_clips is None else records[:max_clips]


def reference_face_boxes(features: str | Path, records: list[ClipRecord]) -> dict[str, np.ndarray]:
    """Clip id -> ``(4,)`` normalised face box of the clip's first frame (the reference);
    NaN where no face was found near it."""
    faces = tables.read_table(Path(features) / "faces.parquet", tables.FACES)
    boxes = normalised_face_boxes(faces, records)
    return {clip_id: face_box_at(b, 0) for clip_id, b in boxes.items()}


@dataclass(frozen=True)
class ModelFolders:
    """The trained models ``infer`` reads: UniVDM, the VAE and (guided modes) the classifiers."""

    univdm: Path
    vae: Path
    classifiers: dict[str, Path] | None = None

    @classmethod
    def under(cls, models: str | Path, mode: str) -> ModelFolders:
        """The folders under ``data/models``; the classifiers only for ``sg`` / ``dg``."""
        models = Path(models)
        classifiers = None
        if mode != "none":
            classifiers = {k: models / "classifier" / k / "final" for k in CLASSIFIER_KINDS}
        return cls(models / "univdm" / "final", models / "vae", classifiers)

    def digests(self) -> dict[str, str]:
        """Folder name -> :func:`~pipeline.io.shards.files_digest` of its files."""
        folders = {"univdm": self.univdm, "vae": self.vae}
        folders |= {f"classifier_{k}": p for k, p in (self.classifiers or {}).items()}
        return {name: sharding.files_digest(path) for name, path in folders.items()}

    def load(self, settings: AnimatorSettings,
             device: torch.device = CPU) -> Animator:  # fmt: skip
        """The :class:`Animator` of these folders, its networks on ``device``."""
        return Animator(self.univdm, self.vae, settings, self.classifiers, device)


@dataclass(frozen=True)
class InferPlan:
    """What one ``infer`` run generates.

    Attributes:
        records: the test clips in clip-id order (:func:`load_test_records`).
        face_boxes: clip id -> ``(4,)`` normalised reference face box
            (:func:`reference_face_boxes`).
        mode: ``none``, ``sg`` or ``dg``.
        seed: ``infer.seed`` (each clip's noise: :func:`clip_seed`).
        lossless_video: write the videos losslessly (``infer.lossless_video``,
            :func:`~pipeline.io.media.write_video`), so ``evaluate`` measures the generator's
            frames rather than the codec's.
    """

    records: list[ClipRecord]
    face_boxes: Mapping[str, np.ndarray]
    mode: str
    seed: int
    lossless_video: bool = False

    @property
    def clip_ids(self) -> list[str]:
        return [r.clip_id for r in self.records]

    def fingerprint(self, settings: AnimatorSettings, model_digests: Mapping[str, str],
                    code: str = "") -> str:  # fmt: skip
        """Hash of the code (``code``: the stage's code digest), the clips (ids, files, frame
        counts, audio features, reference face box), the mode, the seed, the settings and the
        model digests: shards agree when it does."""
        clips = [{"clip_id": r.clip_id, "path": r.path, "audio_path": r.audio_path,
                  "n_frames": r.n_frames,
                  "audio": hashlib.sha256(np.ascontiguousarray(r.audio).tobytes()).hexdigest(),
                  "face_box": [float(v) for v in self.face_boxes[r.clip_id]]}
                 for r in self.records]  # fmt: skip
        return sharding.fingerprint(code, {"mode": self.mode, "seed": self.seed, "clips": clips,
                                     "lossless_video": self.lossless_video,
                                     "settings": dataclasses.asdict(settings),
                                     "models": dict(model_digests)})  # fmt: skip


def generate_clip(animator: Animator, record: ClipRecord, face_box: np.ndarray, mode: str,
                  seed: int, tmp: Path, folder: Path,
                  lossless_video: bool = False) -> dict:  # fmt: skip
    """Generate one test clip into ``tmp``; its ``GENERATED`` row (paths under ``folder``).

    ``lossless_video``: see :class:`InferPlan`.

    A clip that cannot be generated (``ValueError`` / ``RuntimeError``: bad media, no face,
    out of memory) gets ``status`` ``failed`` and the reason; nothing else is caught.
    """
    settings = animator.settings
    row = {"clip_id": record.clip_id, "mode": mode, "status": "ok", "reason": "",
           "n_frames": record.n_frames, "video_path": "", "latents_path": "", "segments": 0,
           "seconds": 0.0, "seconds_per_segment": 0.0}  # fmt: skip
    try:
        first = resize_frames(read_frames(record.path, [0]), settings.size)[0]
        result = animator.generate(first, face_box, record.audio, mode,
                                   clip_seed(seed, record.clip_id))  # fmt: skip
        video, latents = tmp / f"{record.clip_id}.mp4", tmp / f"{record.clip_id}.npy"
        write_video(iter(result.frames), video, settings.fps, audio=record.audio_path,
                    lossless=lossless_video)  # fmt: skip
        np.save(latents, result.latents.float().numpy())
        row |= {"video_path": final_path(video, tmp, folder),
                "latents_path": final_path(latents, tmp, folder),
                "segments": result.segments, "seconds": round(result.seconds, 3),
                "seconds_per_segment": round(result.seconds_per_segment, 3)}  # fmt: skip
    except (ValueError, RuntimeError) as error:
        row |= {"status": "failed", "reason": str(error)}
        log.error("infer %s: %s: %s", mode, record.clip_id, error)
    return row


def generate_shard(plan: InferPlan, load_animator: Callable[[], Animator], out: str | Path,
                   shard: int, shards: int, fingerprint: str) -> Path:  # fmt: skip
    """Generate the clips ``shard::shards`` of ``plan`` into ``<out>/shards/shard-i-of-n``.

    ``load_animator`` is called only when the shard is not already complete for
    ``fingerprint`` (a kept shard loads no model). Returns the shard's folder.
    """

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        animator = load_animator()
        rows = [generate_clip(animator, record, plan.face_boxes[record.clip_id], plan.mode,
                              plan.seed, tmp, folder, plan.lossless_video)
                for record in sharding.shard_items(plan.records, shard, shards)]  # fmt: skip
        return pd.DataFrame(rows, columns=tables.GENERATED.names)

    return sharding.write_shard(out, shard, shards, fingerprint, tables.GENERATED, fill,
                                f"infer {plan.mode}")  # fmt: skip


def merge_generated(
    plan: InferPlan, out: str | Path, shards: int, fingerprint: str
) -> pd.DataFrame:
    """``<out>/index.parquet`` from the ``shards`` shards of ``fingerprint``, in clip order.

    Raises :class:`~pipeline.io.shards.ShardError` naming missing shards, shards of another
    plan, or clips missing from them; shard folders of another count go.
    """
    return sharding.merge_shards(out, shards, fingerprint, tables.GENERATED, "clip_id",
                                 plan.clip_ids, f"infer {plan.mode}")  # fmt: skip


__all__ = [
    "CLASSIFIER_KINDS", "InferPlan", "ModelFolders", "generate_clip", "generate_shard",
    "load_test_records", "merge_generated", "reference_face_boxes",
]  # fmt: skip
