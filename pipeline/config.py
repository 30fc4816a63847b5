"""Typed, validated view of ``params.yaml``: one model per stage section.

``load_params()`` turns the YAML file into a :class:`Params` object. A wrong type, an out-of-range
value or an unknown key raises :class:`ConfigError` naming the file and the dotted key, e.g.
``params.yaml: curate.max_silence_ratio: Input should be less than or equal to 1``.
Stage code receives these objects and never looks at raw dictionaries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """params.yaml is unreadable, has an unknown key or a value of the wrong type."""


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------- corpus
class SampleCorpusParams(Section):
    """The built-in rendered corpus (offline, deterministic from ``corpus.seed``)."""

    n_speakers: int = Field(4, ge=1, le=8)
    clips_per_speaker: int = Field(5, ge=1)
    min_clip_s: float = Field(3.0, gt=0)
    max_clip_s: float = Field(6.0, gt=0)
    size: int = Field(256, ge=64, description="side of the square rendered frames, pixels")

    @model_validator(mode="after")
    def _check_durations(self) -> SampleCorpusParams:
        if self.max_clip_s < self.min_clip_s:
            raise ValueError("max_clip_s must be >= min_clip_s")
        return self


class PatsParams(Section):
    """PATS (``cmu_intervals_df.csv``) plus yt-dlp downloads of the source videos."""

    intervals_csv: str = "data/external/pats/cmu_intervals_df.csv"
    speakers: list[str] = ["jon", "chemistry", "oliver", "seth"]
    language: str = "en"
    url_template: str = "https://www.youtube.com/watch?v={video_id}"
    max_intervals_per_speaker: int | None = Field(None, ge=1)
    min_interval_s: float = Field(4.0, ge=0)
    max_interval_s: float = Field(15.0, gt=0)
    download_dir: str = "data/downloads"
    format: str = "best[height<=720][ext=mp4]/best[height<=720]/best"
    retries: int = Field(3, ge=0)


class LocalParams(Section):
    """A folder of videos (e.g. raw CNAS footage) plus an optional intervals CSV."""

    videos_dir: str = "data/external/local"
    intervals_csv: str | None = None
    speaker: str | None = None  # None: one speaker per video file (its stem)
    language: str = "zh"
    extensions: list[str] = [".mp4", ".mov", ".mkv", ".avi", ".webm"]


class CorpusParams(Section):
    source: Literal["sample", "pats", "local"] = "sample"
    seed: int = 0
    fps: float = Field(25.0, gt=0)
    workers: int = Field(2, ge=1)
    sample: SampleCorpusParams = SampleCorpusParams()
    pats: PatsParams = PatsParams()
    local: LocalParams = LocalParams()


# ---------------------------------------------------------------- cut
class CutParams(Section):
    fps: float = Field(25.0, gt=0)
    size: int = Field(256, ge=64, description="side of the square output clips, pixels")
    crop: Literal["person", "center", "pad"] = "person"
    person_scale: float = Field(
        1.0, gt=0, description="crop side as a multiple of the source height (person policy)"
    )
    sample_rate: int = Field(16000, ge=8000)
    crf: int = Field(18, ge=0, le=51)
    workers: int = Field(2, ge=1)


# ---------------------------------------------------------------- curate
class CurateParams(Section):
    """CNAS-style filters (Appendix C); every threshold is a knob."""

    min_duration_s: float = Field(3.0, ge=0)
    max_duration_s: float = Field(15.0, gt=0)
    min_frames: int = Field(16, ge=1, description="one training window")
    analyse_every: int = Field(5, ge=1, description="analyse every n-th frame for detections")
    scene_cut_threshold: float = Field(0.4, gt=0, le=1)
    max_scene_cuts: int = Field(0, ge=0)
    min_face_ratio: float = Field(0.9, ge=0, le=1)
    max_face_jitter: float = Field(0.25, ge=0)
    min_body_ratio: float = Field(0.8, ge=0, le=1)
    silence_db: float = Field(-40.0, le=0)
    max_silence_ratio: float = Field(0.5, ge=0, le=1)
    max_clipping_ratio: float = Field(0.01, ge=0, le=1)
    min_snr_db: float = 10.0
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_seed: int = 0
    overrides: str = "data/overrides.csv"
    sheet_frames: int = Field(6, ge=1)
    workers: int = Field(2, ge=1)


# ---------------------------------------------------------------- extract
class Wav2Vec2Params(Section):
    path: str | None = None  # local folder with a transformers Wav2Vec2 model
    layers: list[int] = [6, 9, 12]


class ExtractParams(Section):
    pose_backend: Literal["annotations", "mediapipe", "dwpose"] = "mediapipe"
    dwpose_dir: str | None = None  # folder with DWPose's ONNX weights
    face_min_score: float = Field(0.5, ge=0, le=1)
    audio_features: Literal["mel", "wav2vec2"] = "mel"
    n_mels: int = Field(80, ge=8)
    wav2vec2: Wav2Vec2Params = Wav2Vec2Params()
    pck_threshold: float = Field(0.1, gt=0, description="PCK radius as a fraction of clip size")
    workers: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check_weights(self) -> ExtractParams:
        if self.audio_features == "wav2vec2" and not self.wav2vec2.path:
            raise ValueError("audio_features 'wav2vec2' needs wav2vec2.path (a local folder)")
        if self.pose_backend == "dwpose" and not self.dwpose_dir:
            raise ValueError("pose_backend 'dwpose' needs dwpose_dir (a local folder)")
        return self


class Params(Section):
    corpus: CorpusParams = CorpusParams()
    cut: CutParams = CutParams()
    curate: CurateParams = CurateParams()
    extract: ExtractParams = ExtractParams()


def _format_error(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: {key}: {message}")
    return "\n".join(lines)


def parse_params(raw: dict, source: str | os.PathLike = "params.yaml") -> Params:
    """Validate a params dictionary; raise :class:`ConfigError` naming the bad keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_error(Path(source), error)) from None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate ``params.yaml`` (the YAML may omit sections; defaults fill them)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return parse_params(raw, path)
