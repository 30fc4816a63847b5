"""Typed, validated view of ``params.yaml``: one model per stage section.

``load_params()`` turns the YAML file into a :class:`Params` object. A wrong type, an out-of-range
value or an unknown key raises :class:`ConfigError` naming the file and the dotted key, e.g.
``params.yaml: curate.max_silence_ratio: Input should be less than or equal to 1``.
Stage code receives these objects and never looks at raw dictionaries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError


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
    max_intervals_per_speaker: int | None = Field(
        None,
        ge=1,
        description="the first N usable intervals per speaker, in file order "
        "(downloaded, readable, within their video, source tall enough); null: all",
    )
    min_interval_s: float = Field(4.0, ge=0)
    max_interval_s: float = Field(15.0, gt=0)
    download_dir: str = "data/downloads"
    # YouTube serves 720p and up only as separate video and audio streams (the muxed 720p
    # format 22 is gone): take the best video up to 720 lines plus the best audio and let
    # yt-dlp merge them with ffmpeg; a muxed file only when no split pair exists.
    format: str = "bv*[height<=?720]+ba/b[height<=?720]"
    merge_output_format: str = "mp4"
    min_height: int | None = Field(
        None,
        ge=1,
        description="a source video shorter than this many lines is a failed row "
        "(its clips would be upscaled); null: no check",
    )
    cookies: str | None = Field(
        None,
        description="Netscape cookies file for yt-dlp (sites "
        "asking to sign in or to prove one is not a bot)",
    )
    extractor_args: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="yt-dlp extractor_args, e.g. {youtube: {player_client: [web]}}",
    )
    retries: int = Field(3, ge=0)


class LocalParams(Section):
    """A folder of videos (e.g. raw CNAS footage) plus an optional intervals CSV."""

    videos_dir: str = "data/external/local"
    intervals_csv: str | None = None
    speaker: str | None = None  # None: one speaker per video file (its stem)
    speaker_map: str | None = Field(
        None,
        description="CSV video,speaker: the speaker of each video (path relative to "
        "videos_dir), e.g. the anchor of each broadcast; videos it does not list fall back "
        "to `speaker`, then the file stem",
    )
    language: str = "zh"
    extensions: list[str] = [".mp4", ".mov", ".mkv", ".avi", ".webm"]


SourceKind = Literal["sample", "pats", "local"]


class SourceParams(Section):
    """One source of a joint corpus (an entry of ``corpus.sources``).

    ``name`` goes into every row's ``source`` column (and is what ``negatives.positive_sources``
    names); ``kind`` says how it is gathered. The section of its kind (``sample``, ``pats`` or
    ``local``) may be given here, replacing ``corpus.<kind>`` for this source only; the sections
    of other kinds may not.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    kind: SourceKind
    sample: SampleCorpusParams | None = None
    pats: PatsParams | None = None
    local: LocalParams | None = None

    @model_validator(mode="after")
    def _check_section(self) -> SourceParams:
        other = [k for k in ("sample", "pats", "local") if k != self.kind
                 and getattr(self, k) is not None]  # fmt: skip
        if other:
            raise ValueError(f"source {self.name!r} is of kind {self.kind!r}: it cannot have "
                             f"a {other[0]!r} section")  # fmt: skip
        return self


class ResolvedSource(NamedTuple):
    """A source with its settings: ``settings`` is a Sample/Pats/LocalParams."""

    name: str
    kind: SourceKind
    settings: SampleCorpusParams | PatsParams | LocalParams


class CorpusParams(Section):
    """Where the videos come from: ``source`` (one source, named after its kind) or
    ``sources`` (several, e.g. PATS and a CNAS folder, into one table; Section 5.1)."""

    source: SourceKind = "sample"
    sources: list[SourceParams] | None = Field(
        None, min_length=1, description="several sources into one corpus (replaces `source`)"
    )
    seed: int = 0
    fps: float = Field(25.0, gt=0)
    workers: int = Field(2, ge=1)
    sample: SampleCorpusParams = SampleCorpusParams()
    pats: PatsParams = PatsParams()
    local: LocalParams = LocalParams()

    @model_validator(mode="after")
    def _check_sources(self) -> CorpusParams:
        names = [s.name for s in self.sources or ()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"corpus.sources: names must be unique, repeated: {repeated}")
        return self

    def resolved_sources(self) -> list[ResolvedSource]:
        """The sources to gather, in order, each with its settings."""
        if self.sources is None:
            return [ResolvedSource(self.source, self.source, getattr(self, self.source))]
        return [ResolvedSource(s.name, s.kind, getattr(s, s.kind) or getattr(self, s.kind))
                for s in self.sources]  # fmt: skip


# ---------------------------------------------------------------- cut
class SegmentParams(Section):
    """What becomes a clip for one source: ``intervals`` (each corpus interval) or ``fixed``
    (``segment_s`` pieces of every interval)."""

    segment: Literal["intervals", "fixed"] = "intervals"
    segment_s: float = Field(5.0, gt=0)


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
    # What becomes a clip: each interval of the corpus as it is (PATS), or each interval split
    # into consecutive segments of exactly segment_s (CNAS's release: 5 s, 125 frames at 25 fps,
    # Appendix C); see pipeline.curation.cut.plan_segments.
    segment: Literal["intervals", "fixed"] = "intervals"
    segment_s: float = Field(5.0, gt=0, description="fixed segment length, seconds")
    # Per source (its corpus.sources name): PATS's intervals as they are, a CNAS folder of long
    # broadcasts in 5 s pieces, in one corpus.
    per_source: dict[str, SegmentParams] = Field(
        default_factory=dict, description="source name -> {segment, segment_s} for its rows"
    )

    @model_validator(mode="after")
    def _check_segment(self) -> CutParams:
        for name, rule in [("cut", self), *self.per_source.items()]:
            frames = rule.segment_s * self.fps
            if rule.segment == "fixed" and abs(frames - round(frames)) > 1e-6:
                raise ValueError(
                    f"{name}: segment_s {rule.segment_s:g} s at fps {self.fps:g} is {frames:g} "
                    "frames; fixed segments must be a whole number of frames"
                )
        return self

    def segment_rule(self, source: str) -> SegmentParams:
        """How the rows of ``source`` are cut: its ``per_source`` entry, else the section's."""
        return self.per_source.get(source) or SegmentParams(
            segment=self.segment, segment_s=self.segment_s
        )


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
    # "without cutouts or camera movements" (Section 5.1): background motion between analysed
    # frames, per frame, as a fraction of the frame side (pan) and of the scale (zoom).
    max_camera_motion: float = Field(0.001, ge=0, description="pan, frame sides per frame")
    max_camera_zoom: float = Field(0.001, ge=0, description="zoom, |log scale| per frame")
    # A still picture with speech over it: median mean |grey change| between analysed frames.
    min_frame_change: float = Field(0.001, ge=0, le=1, description="0-1 grey scale")
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


# ---------------------------------------------------------------- train_vae
class TrainVaeParams(Section):
    """The VAE: a pretrained AutoencoderKL from a local folder, or a small one trained here
    (:mod:`pipeline.training.vae_trainer`)."""

    pretrained: str | None = None  # local diffusers AutoencoderKL folder (paper: SD's VAE)
    size: int = Field(64, ge=16, description="training resolution of the frames, pixels")
    block_out_channels: list[int] = [16, 32, 64]
    layers_per_block: int = Field(1, ge=1)
    latent_channels: int = Field(4, ge=1)
    norm_num_groups: int = Field(8, ge=1)
    steps: int = Field(600, ge=1)
    batch_size: int = Field(8, ge=1, description="global batch of one optimizer step")
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="frames per process per forward pass (null: batch_size / "
        "processes); the rest is gradient accumulation",
    )
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = Field(
        "cosine", description="diffusers get_scheduler name: after the warm-up, decay to 0 or not"
    )
    warmup_steps: int = Field(50, ge=0, description="linear LR warm-up from 0")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient-norm clipping")
    kl_weight: float = Field(1e-6, ge=0)
    eval_frames: int = Field(64, ge=1, description="test-split frames for the PSNR report")
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(1, ge=1)
    seed: int = 0


# ---------------------------------------------------------------- train_univdm
class ParParams(Section):
    """Parts-Aware Re-weighting (Section 4.1.2, Eq. 2-3)."""

    enabled: bool = True  # False: plain MSE (the paper's "w/o PAR" ablation)
    tau: float = Field(0.8, ge=0, le=1, description="keypoint score threshold")
    radius_at_512: float = Field(10.0, gt=0, description="circle radius r at 512 px; scaled")
    omega1: float = Field(10.0, gt=0, description="weight of hand/face areas")
    omega2: float = Field(2.0, gt=0, description="weight of the body area")
    sigma_at_512: float = Field(
        4.0, ge=0, description="Gaussian smoothing sigma T(.) at 512 px, pixels; scaled"
    )
    aggregate: Literal["sum", "mean", "max"] = Field(
        "sum",
        description=(
            "how the scores of the hand/face discs covering a pixel combine into S(x): sum "
            "(Eq. 3 as printed; dense face discs pile up to many times omega1), mean or max of "
            "the covering scores (the weight stays near omega1 * score; smoothed as a "
            "normalised convolution so disc rims keep the score level)"
        ),
    )
    floor: bool = Field(
        False,
        description="floor the hand/face weight at omega2: max(omega1 * T(S), omega2), so a "
        "hand/face pixel never weighs less than the body",
    )
    figures: int = Field(3, ge=0, description="Fig. 3-style figures written for training clips")


class UNetParams(Section):
    """Size of the diffusers UNetSpatioTemporalConditionModel backbone (group norm of 32:
    every block width must be a multiple of 32)."""

    block_out_channels: list[int] = [32, 64]
    layers_per_block: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    cross_attention_dim: int = Field(64, ge=8)
    addition_time_embed_dim: int = Field(32, ge=2, description="width of each time id's embedding")
    cross_attention_levels: list[bool] | None = Field(
        None, description="levels (down order) with attention; null: all (SVD: last one off)"
    )
    pretrained: str | None = Field(
        None, description="local diffusers folder of an SVD UNet to start from (Appendix B.1)"
    )
    parametrisation: Literal["epsilon", "v", "svd"] = Field(
        "epsilon",
        description="UNet input/output: DDPM index + epsilon, DDPM index + v, or SVD's c_noise + v",
    )

    @model_validator(mode="after")
    def _check_widths(self) -> UNetParams:
        bad = [c for c in self.block_out_channels if c % 32 or c % self.attention_head_dim]
        if bad:
            raise ValueError(
                f"block_out_channels {bad} must be multiples of 32 (group norm) and of "
                f"attention_head_dim {self.attention_head_dim}"
            )
        levels = self.cross_attention_levels
        if levels is not None and len(levels) != len(self.block_out_channels):
            raise ValueError(f"cross_attention_levels {levels} needs one entry per level of "
                             f"block_out_channels {self.block_out_channels}")  # fmt: skip
        return self


class TrainUnivdmParams(Section):
    size: int = Field(64, ge=16, description="video resolution, pixels (square)")
    frames: int = Field(8, ge=2, description="frames per training window t")
    audio_context: int = Field(2, ge=0, description="m: audio frames each side in A(f)")
    first_frame_prob: float = Field(
        0.5, ge=0, le=1, description="probability a window is first-frame conditioned"
    )
    audio_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of training windows heard without audio (for infer.audio_cfg; paper 0)",
    )
    clip: str | None = None  # local CLIP vision model folder; None: no image embedding
    unet: UNetParams = UNetParams()
    par: ParParams = ParParams()
    steps: int = Field(400, ge=1)
    batch_size: int = Field(
        2,
        ge=1,
        description="global batch of one optimizer step, all "
        "processes and accumulated micro-batches together (paper: 8)",
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="windows per process per forward pass; batch_size / (processes "
        "x micro_batch_size) micro-batches are accumulated. null: batch_size / processes",
    )
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_steps: int = Field(20, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # "fp32" rather than accelerate's "no": `dvc exp run -S` rewrites params.yaml without quotes
    # and YAML 1.1 reads a bare `no` as false.
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    zero_terminal_snr: bool = Field(
        False, description="betas rescaled so the last step is pure noise (Lin et al. 2024)"
    )
    timestep_spacing: Literal["leading", "trailing", "linspace"] = Field(
        "leading", description="DDIM timesteps of every sampler of this model (trailing: from T)"
    )
    loss_target: Literal["epsilon", "v"] = Field(
        "epsilon", description="what the (PAR-weighted) MSE compares: Eq. 1's noise, or v"
    )
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1, description="latest checkpoints kept (+ negatives')")
    log_every: int = Field(10, ge=1)
    preview_steps: int = Field(10, ge=1, description="DDIM steps of the end-of-training preview")
    workers: int = Field(0, ge=0, description="data-loader worker processes")
    seed: int = 0

    @model_validator(mode="after")
    def _check_target(self) -> TrainUnivdmParams:
        if self.loss_target == "v" and self.unet.parametrisation == "epsilon":
            raise ValueError("loss_target v needs a UNet that predicts v (unet.parametrisation "
                             "v or svd): v from predicted noise is undefined at zero "
                             "SNR")  # fmt: skip
        return self


# ---------------------------------------------------------------- negatives
class NegativesParams(Section):
    """PCE training pairs (Section 4.1.3, Fig. 5, Appendix B.3.2): one generated negative per
    real training window."""

    checkpoint_step: int = Field(
        200, ge=1, description="UniVDM checkpoint for the negatives (paper: 60k of 100k)"
    )
    ddim_steps: int = Field(10, ge=1, description="DDIM steps per segment (paper 30)")
    lengths: list[int] = Field(
        [8, 12], min_length=1, description="window lengths in frames (paper 30/60/90/120)"
    )
    stride: int | None = Field(
        None, ge=1, description="frames between window starts in a clip; None: non-overlapping"
    )
    max_windows: int | None = Field(None, ge=1, description="cap on windows (seeded subset)")
    heldout_fraction: float = Field(
        0.2, gt=0, lt=1, description="train clips held out to evaluate the classifiers"
    )
    batch_size: int = Field(8, ge=1, description="windows generated together")
    dtype: Literal["float16", "float32"] = "float32"  # stored latents
    positive_sources: list[str] | None = Field(
        None, min_length=1,
        description="corpus sources whose clips give the classifiers' real windows (None: all; "
        "the paper: PATS only, Section 5.1)",
    )  # fmt: skip
    augment: bool = Field(
        True, description="varying lengths + random reference frames (False: Table 3's w/o)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check_lengths(self) -> NegativesParams:
        if any(n < 2 for n in self.lengths):
            raise ValueError(f"lengths {self.lengths}: every window needs at least 2 frames")
        return self


# ---------------------------------------------------------------- train_classifier
class ClassifierParams(Section):
    """One PCE sync classifier (Section 4.1.3, Appendix B.3.3); ``face`` or ``nonface``."""

    width: int = Field(64, ge=8, description="transformer width")
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    mask_prob: float = Field(
        0.8,
        ge=0,
        le=1,
        description="nonface: probability the face is masked (paper 0.8); face: the rest is "
        "masked with this probability (1: always)",
    )
    face_dilation: float = Field(
        0.25, ge=0, description="face box grown by this fraction of its size on every side"
    )
    steps: int = Field(300, ge=1)
    batch_size: int = Field(8, ge=2, description="half real pairs, half generated (paper 16)")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_steps: int = Field(30, ge=0, description="linear warm-up (paper 5000)")
    max_grad_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=1, description="held-out ROC-AUC every this many steps")
    eval_buckets: int = Field(4, ge=1, description="noise-level buckets of the held-out AUC")
    shift_s: float = Field(1.0, gt=0, description="audio shift of the mismatched-pair check")
    real_negative_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of a batch's negatives replaced by the real window with audio from "
        "elsewhere (paper 0: generated negatives only)",
    )
    real_negative_min_shift_s: float = Field(
        0.4, gt=0, description="such audio starts at least this far from the window's own"
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="mixed precision of training (through accelerate)"
    )
    crop_size: int | None = Field(
        None,
        ge=1,
        description="the encoder reads the region's bounding box resized to this many latent "
        "cells a side (face: the dilated face box); null: the whole masked latent (paper)",
    )
    sync_channels: int = Field(
        0,
        ge=0,
        description="channels K of the sync-correlation head added to the [CLS] logit (the "
        "Pearson correlation over frames of K video and K audio read-outs); 0: none (paper)",
    )
    sync_grid: int = Field(4, ge=1, description="the correlation head pools the latent it "
                           "reads to this many cells a side")  # fmt: skip
    sync_fit_steps: int = Field(
        0,
        ge=0,
        description="steps that fit the correlation head alone (no UNet call) on real windows "
        "with their own audio vs. audio from elsewhere, before the joint training",
    )
    sync_fit_batch_size: int = Field(16, ge=2, description="pairs per correlation-fit step")
    sync_fit_lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the fit")
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check_width(self) -> ClassifierParams:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} / heads {self.heads} must give an even head dim")
        if self.batch_size % 2:
            raise ValueError(f"batch_size {self.batch_size} must be even (real + generated pairs)")
        if self.sync_fit_steps and not self.sync_channels:
            raise ValueError(f"sync_fit_steps {self.sync_fit_steps} fits a correlation head that "
                             "sync_channels = 0 leaves out")  # fmt: skip
        if self.sync_fit_batch_size % 2:
            raise ValueError(f"sync_fit_batch_size {self.sync_fit_batch_size} must be even")
        return self


class TrainClassifierParams(Section):
    face: ClassifierParams = ClassifierParams(mask_prob=1.0)
    nonface: ClassifierParams = ClassifierParams()


# ---------------------------------------------------------------- infer
class InferParams(Section):
    """Inference (Section 4.2, Algorithm 1, Appendix B.4): DDIM with SG / DG guidance."""

    steps: int = Field(10, ge=1, description="DDIM steps per segment (paper 30)")
    guidance_rate: float = Field(
        0.5, ge=0, le=1, description="share of the first DDIM steps that are guided (paper 0.5)"
    )
    lambda_nonface: float = Field(1.0, ge=0, description="non-face guidance weight (paper 1)")
    lambda_face: float = Field(0.1, ge=0, description="face guidance weight (paper 0.1)")
    lambda_diff: float = Field(0.25, ge=0, description="DG's differential weight (paper 0.25)")
    # "differential": the reading of Eq. 12 in DESIGN.md; "literal": Eq. 12 as printed.
    dg_form: Literal["differential", "literal"] = "differential"
    face_dilation: float = Field(0.25, ge=0, description="M_face: the face box grown by this")
    audio_cfg: float = Field(
        0.0,
        ge=0,
        description="audio classifier-free guidance s: eps(a) + s (eps(a) - eps(no "
        "audio)), every DDIM step, every mode; needs train_univdm.audio_dropout > 0 (paper 0)",
    )
    max_clips: int | None = Field(None, ge=1, description="test clips generated (None: all)")
    lossless_video: bool = Field(
        False,
        description="videos in lossless RGB H.264 (measured, not for browsers) instead of "
        "4:2:0 at crf 18; at 64 px 4:2:0 keeps 32 px of colour and blurs the lips",
    )
    seed: int = 0


# ---------------------------------------------------------------- metric models and evaluate
class MetricModelTraining(Section):
    """The training loop of a metric model (``train_gesture_ae``, ``train_syncnet``)."""

    steps: int = Field(600, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    heldout_fraction: float = Field(0.2, ge=0, lt=1, description="train clips kept for its check")
    save_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(20, ge=1)
    seed: int = 0


class TrainGestureAEParams(MetricModelTraining):
    """``train_gesture_ae``: the HA2G-style pose autoencoder whose features give FGD and Div.

    It is trained on the train split's upper-body and hand keypoints (``extract``'s poses),
    normalised per frame (centred on the shoulders' midpoint, divided by the shoulder width) and
    standardised with training-set statistics, with L1 + ``velocity_weight`` x velocity L1.
    """

    window: int = Field(34, ge=4, description="frames per pose sequence (HA2G: 34)")
    stride: int = Field(10, ge=1, description="frames between training windows")
    hidden: int = Field(64, ge=4, description="channels of the 1D convolutions")
    feature_dim: int = Field(32, ge=2, description="feature vector per window (FGD / Div.)")
    velocity_weight: float = Field(1.0, ge=0)
    min_score: float = Field(0.3, ge=0, le=1, description="keypoints below this are missing")


class TrainSyncNetParams(MetricModelTraining):
    """``train_syncnet``: the SyncNet behind Sync-C / Sync-D.

    With ``weights`` (a local ``syncnet_v2.model``, the official SyncNet's state dict) the stage
    records that file and the metrics are the real Sync-C / Sync-D; the architecture is then the
    official one (224 px crops, full widths, 1024-d embeddings). Without it, a SyncNet of the same
    architecture, scaled by ``width`` and ``size``, is trained on the corpus's face crops and its
    results are reported as ``sync_corpus_c`` / ``sync_corpus_d``.
    """

    weights: str | None = None
    size: int = Field(48, ge=32, description="face crop side fed to the network (official 224)")
    width: float = Field(0.25, gt=0, le=1, description="channel scale (official 1.0)")
    embedding: int = Field(256, ge=8, description="embedding size (official 1024)")
    crop_scale: float = Field(0.4, ge=0, description="face box grown by this on each side")
    min_shift: int = Field(5, ge=1, description="off-sync negatives are shifted >= this, frames")
    max_shift: int = Field(15, ge=1, description="... and <= this many frames")
    margin: float = Field(1.0, gt=0, description="contrastive loss margin")
    batch_size: int = Field(32, ge=2)

    @model_validator(mode="after")
    def _check_shifts(self) -> TrainSyncNetParams:
        if self.min_shift > self.max_shift:
            raise ValueError(f"min_shift ({self.min_shift}) > max_shift ({self.max_shift})")
        return self


class BeatParams(Section):
    """BAS (Beat Alignment Score), see :mod:`pipeline.metrics.beats`."""

    sigma_s: float = Field(0.1, gt=0, description="Gaussian width, seconds")
    direction: Literal["motion_to_audio", "audio_to_motion"] = "motion_to_audio"
    smooth_s: float = Field(0.08, ge=0, description="keypoint speed smoothing window, seconds")
    min_gap_s: float = Field(0.2, gt=0, description="motion beats closer than this are merged")


class FvdParams(Section):
    """FVD with the StyleGAN-V I3D torchscript; ``i3d: null`` makes FVD ``null`` (and why)."""

    i3d: str | None = None
    clip_frames: int = Field(16, ge=8)
    size: int = Field(224, ge=32)
    batch_size: int = Field(8, ge=1)


class EvaluateParams(Section):
    """``evaluate``: every metric of Section 5.1 / Appendix B.5 on the ``infer`` outputs."""

    size: int = Field(64, ge=16, description="frames resized to size x size first (paper 256)")
    pose_backend: Literal["mediapipe", "dwpose"] = "mediapipe"
    pose_min_score: float = Field(0.3, ge=0, le=1)
    sync_face_track: bool = Field(
        True,
        description="SyncNet crops follow each video's face "
        "track (syncnet_python); false: one box, the reference frame's",
    )
    min_pose_rate: float = Field(
        0.5, ge=0, le=1, description="videos whose person is found in fewer frames skip FGD/Div/BAS"
    )
    region_tau: float = Field(0.3, ge=0, le=1, description="keypoint score for the region masks")
    region_radius_at_512: float = Field(24.0, gt=0, description="disc radius of face/hand masks")
    max_drift_db: float = Field(
        3.0, ge=0, description="a long video holds when its last quarter's PSNR is within this"
    )
    bas: BeatParams = BeatParams()
    fvd: FvdParams = FvdParams()
    div_seed: int = 0
    report_clips: int = Field(3, ge=0, description="clips shown side by side in the report")
    report_frames: int = Field(4, ge=1, description="frames per clip in the report")


# ---------------------------------------------------------------- runtime
class RuntimeParams(Section):
    """Where and in what precision the networks run, for every stage that runs one and for
    ``paha animate`` (:mod:`pipeline.models.device`)."""

    device: str = Field(
        "auto",
        description="auto (CUDA when torch sees it, else the CPU) | cpu | cuda | cuda:N",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="autocast of sampling (infer, negatives, paha animate), the classifiers' "
        "guidance gradients and the metric networks; training keeps its own precision",
    )
    launcher: str = Field(
        "python",
        min_length=1,
        description="what runs `-m stages.train_univdm` and `-m stages.train_classifier` in "
        "dvc.yaml: `python` (one process) or a multi-process launcher, e.g. `accelerate launch "
        "--multi_gpu --num_processes 8` or `torchrun --nproc_per_node 2` (CPU ranks)",
    )


# ---------------------------------------------------------------- export (`paha export`)
class ExportParams(Section):
    """The dataset card's fields for ``paha export`` (Hugging Face dataset-card names)."""

    pretty_name: str = "PAHA curated corpus"
    license: str = Field("other", description="a Hugging Face licence id, e.g. cc-by-nc-4.0")
    license_note: str = ""
    description: str = "Talking upper-body clips with speech, curated by the PAHA pipeline."
    tags: list[str] = ["talking-head", "co-speech-gesture", "audio-driven-animation"]
    source_datasets: list[str] = []


class Params(Section):
    runtime: RuntimeParams = RuntimeParams()
    corpus: CorpusParams = CorpusParams()
    cut: CutParams = CutParams()
    curate: CurateParams = CurateParams()
    extract: ExtractParams = ExtractParams()
    train_vae: TrainVaeParams = TrainVaeParams()
    train_univdm: TrainUnivdmParams = TrainUnivdmParams()
    negatives: NegativesParams = NegativesParams()
    train_classifier: TrainClassifierParams = TrainClassifierParams()
    infer: InferParams = InferParams()
    train_gesture_ae: TrainGestureAEParams = TrainGestureAEParams()
    train_syncnet: TrainSyncNetParams = TrainSyncNetParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()

    @model_validator(mode="after")
    def _check_negatives_step(self) -> Params:
        if self.negatives.checkpoint_step > self.train_univdm.steps:
            raise ValueError(
                f"negatives.checkpoint_step ({self.negatives.checkpoint_step}) is after the "
                f"last training step (train_univdm.steps = {self.train_univdm.steps})"
            )
        return self

    @model_validator(mode="after")
    def _check_audio_cfg(self) -> Params:
        if self.infer.audio_cfg > 0 and self.train_univdm.audio_dropout == 0:
            raise ValueError(f"infer.audio_cfg ({self.infer.audio_cfg}) needs a UniVDM trained "
                             "to predict without audio: set train_univdm.audio_dropout > 0 "
                             "(e.g. 0.1)")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _check_positive_sources(self) -> Params:
        names = [source.name for source in self.corpus.resolved_sources()]
        unknown = [n for n in self.negatives.positive_sources or () if n not in names]
        if unknown:
            raise ValueError(f"negatives.positive_sources names {unknown}, which are not corpus "
                             f"sources (they are {names})")  # fmt: skip
        return self


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
