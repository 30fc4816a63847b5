"""Making a video from a reference image and speech with the trained artifacts (Section 4.2).

:class:`Animator` holds UniVDM, the VAE, the two PCE classifiers (for SG / DG) and the settings
the models were trained and are sampled with (:class:`AnimatorSettings`, plain values; the
params become one in :func:`pipeline.builders.animator_settings`). Inputs are prepared the way
training did: the reference cropped around the person like ``cut`` and resized to the training size
(:func:`crop_reference`); the audio as the same per-frame features as ``extract`` (the caller's
featurizer). It generates one frame per ``1 / fps`` of audio as chained segments
(:func:`pipeline.inference.sampling.sample_long_video`) and decodes the latents.

Used by ``paha animate`` and by the ``infer`` stage (:mod:`pipeline.inference.generate`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from pipeline.curation.cut import crop_box
from pipeline.data.face_boxes import face_mask
from pipeline.data.images import frames_to_images, images_to_frames
from pipeline.data.windows import audio_windows, resize_frames
from pipeline.errors import InputError, MissingInputError
from pipeline.inference.guidance import Classifiers, GuidanceWeights
from pipeline.inference.sampling import sample_long_video, segment_starts
from pipeline.io.audio import SAMPLE_RATE
from pipeline.io.media import MediaError
from pipeline.models.classifier import SyncClassifier
from pipeline.models.device import CPU, autocast, is_cuda
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM
from pipeline.models.vae import decode_latents, encode_frames

if TYPE_CHECKING:
    pass

log = logging.getLogger("paha.inference")

SILENCE_DBFS = -60.0  # an input whose loudest 20 ms is quieter than this is "silent"


@dataclass
class Generated:
    """One generated video: latents ``(n_frames, C, h, w)``, frames ``(n_frames, S, S, 3)``."""

    latents: torch.Tensor
    frames: np.ndarray
    segments: int
    seconds: float

    @property
    def seconds_per_segment(self) -> float:
        return self.seconds / self.segments


def check_speech(wave: np.ndarray, path: str | Path, min_seconds: float) -> None:
    """Raise :class:`InputError` for a silent or too short waveform (16 kHz mono)."""
    if len(wave) < min_seconds * SAMPLE_RATE:
        raise InputError(f"{path}: audio is {len(wave) / SAMPLE_RATE:.2f} s, shorter than one "
                         f"segment ({min_seconds:.2f} s)")  # fmt: skip
    hop = SAMPLE_RATE // 50
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    loudest = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())
    if 20 * math.log10(max(loudest, 1e-12)) < SILENCE_DBFS:
        raise InputError(f"{path}: audio is silent (loudest 20 ms below {SILENCE_DBFS:.0f} dBFS)")


def crop_reference(image: np.ndarray, face_box: np.ndarray, size: int,
                   crop: Literal["person", "center", "pad"] = "person",
                   person_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Crop and resize a reference image as ``cut`` + training did.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        face_box: ``(4,)`` pixel box ``x0, y0, x1, y1`` of the face in ``image``.
        size: the training frame side ``S`` (``train_univdm.size``).
        crop, person_scale: ``cut``'s crop policy and person scale (``pad`` crops like
            ``center`` here).

    Returns:
        ``(frame (S, S, 3) uint8, face box (4,) normalised to the crop)``.
    """
    height, width = image.shape[:2]
    centre = np.array([[(face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2]])
    policy = "center" if crop == "pad" else crop
    x0, y0, side, _ = crop_box(width, height, policy, centre, person_scale)
    crop_pixels = image[int(round(y0)) : int(round(y0 + side)),
                        int(round(x0)) : int(round(x0 + side))]  # fmt: skip
    frame = resize_frames(crop_pixels[None], size)[0]
    box = (np.asarray(face_box[:4], np.float64) - [x0, y0, x0, y0]) / side
    return frame, np.clip(box, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class AnimatorSettings:
    """How the models were trained and how to sample them (plain values, no params).

    Attributes:
        size: side ``S`` of the training frames (``train_univdm.size``).
        fps: video frames per second, one audio-feature row per frame (``cut.fps``).
        steps: DDIM steps per segment (``infer.steps``; paper 30).
        guidance: the guidance weights and time rate (``infer``, Eq. 8-12); its ``mode`` is
            replaced by each :meth:`Animator.generate` call's.
        face_dilation: ``M_f`` is the reference face box grown by this (``infer.face_dilation``).
        num_train_timesteps, beta_schedule, zero_terminal_snr: the noise schedule UniVDM was
            trained with; timestep_spacing: the DDIM timesteps it is sampled at
            (:mod:`pipeline.models.schedulers`).
        clip: the CLIP image encoder UniVDM was trained with, or None (``train_univdm.clip``).
        precision: autocast of the sampling and the guidance gradients, ``fp32`` / ``bf16`` /
            ``fp16`` (``runtime.precision``); the VAE encodes and decodes in fp32.
        audio_cfg: audio classifier-free guidance scale (``infer.audio_cfg``; 0: none).
    """

    size: int
    fps: float = 25.0
    steps: int = 30
    guidance: GuidanceWeights = field(default_factory=GuidanceWeights)
    face_dilation: float = 0.25
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    zero_terminal_snr: bool = False
    timestep_spacing: str = "leading"
    clip: str | None = None
    precision: str = "fp32"
    audio_cfg: float = 0.0


class Animator:
    """Trained UniVDM (+ VAE, + classifiers) ready to generate.

    Args:
        univdm_dir: folder written by ``UniVDM.save`` (``data/models/univdm/final``).
        vae_dir: ``data/models/vae``.
        settings: how the models were trained and are sampled (:class:`AnimatorSettings`).
        classifier_dirs: ``{"face": ..., "nonface": ...}`` final classifier folders, or None
            (unguided only).
        device: where every network is moved and the sampling runs (``runtime.device``,
            resolved by :func:`pipeline.models.device.resolve_device`).

    Raises MissingInputError naming a model folder that does not exist.
    """

    def __init__(self, univdm_dir: str | Path, vae_dir: str | Path, settings: AnimatorSettings,
                 classifier_dirs: dict[str, str | Path] | None = None,
                 device: torch.device = CPU):  # fmt: skip
        from pipeline.models.vae import resolve_vae

        self.settings = settings
        self.device = torch.device(device)
        for path in [univdm_dir, vae_dir, *(classifier_dirs or {}).values()]:
            if not Path(path).is_dir():
                raise MissingInputError(f"{path}: model folder not found (run `dvc repro` or "
                                        "give the path)")  # fmt: skip
        self.model = UniVDM.load(univdm_dir).eval().to(self.device)
        self.vae = resolve_vae(vae_dir).eval().to(self.device)
        self.scheduler = noise_scheduler(settings.num_train_timesteps, settings.beta_schedule,
                                         settings.zero_terminal_snr,
                                         settings.timestep_spacing)  # fmt: skip
        self.classifiers = None
        if classifier_dirs:
            self.classifiers = {kind: SyncClassifier.load(path).eval().to(self.device)
                                for kind, path in classifier_dirs.items()}  # fmt: skip
        self.image_encoder = None
        if settings.clip:
            from pipeline.models.image_encoder import ClipImageEncoder

            self.image_encoder = ClipImageEncoder(settings.clip).to(self.device)

    @property
    def segment_seconds(self) -> float:
        """Seconds of audio one segment of ``frames`` frames covers."""
        return self.model.config.frames / self.settings.fps

    def weights(self, mode: str) -> GuidanceWeights:
        """The guidance weights of ``mode`` (``none``, ``sg`` or ``dg``)."""
        return dataclasses.replace(self.settings.guidance, mode=mode)

    @torch.no_grad()
    def generate(self, reference: np.ndarray, face_box: np.ndarray, features: np.ndarray,
                 mode: str, seed: int, callback=None) -> Generated:  # fmt: skip
        """A video of ``len(features)`` frames: :meth:`sample`, then the VAE decodes.

        Args:
            reference: ``(S, S, 3)`` uint8 reference frame at the training size.
            face_box: ``(4,)`` normalised face box of the reference (``M_f`` of guidance).
            features: ``(n_frames, A)`` per-frame audio features.
            mode: ``none``, ``sg`` or ``dg``.
            seed: draws every segment's initial noise.
            callback: called after each DDIM step (progress).

        The returned latents ``(n_frames, C, h, w)`` and frames are on the CPU.
        """
        latents, segments, seconds = self.sample(reference, face_box, features, mode, seed,
                                                 callback)  # fmt: skip
        frames = images_to_frames(decode_latents(self.vae, latents))
        return Generated(latents.cpu(), frames, segments, seconds)

    @torch.no_grad()
    def sample(self, reference: np.ndarray, face_box: np.ndarray, features: np.ndarray,
               mode: str, seed: int, callback=None) -> tuple[torch.Tensor, int, float]:  # fmt: skip
        """Latents ``(n_frames, C, h, w)`` float32 on ``device``, the number of segments and
        the sampling seconds (arguments as :meth:`generate`'s).

        The inputs move to ``device``; the initial noise is drawn on the CPU from ``seed``
        (the same numbers on every device) and moved; DDIM and guidance run under
        ``settings.precision`` autocast.
        """
        config, settings, device = self.model.config, self.settings, self.device
        n_frames = len(features)
        starts = segment_starts(n_frames, config.frames)
        total = starts[-1] + config.frames
        weights = self.weights(mode)
        classifiers = None
        clean = torch.from_numpy(np.asarray(features, np.float32))
        if weights.guided_steps(settings.steps):
            if not self.classifiers:
                raise MissingInputError(f"guidance mode {mode!r} needs the face and non-face "
                                        "classifiers (data/models/classifier)")  # fmt: skip
            # Past the audio's end the last row repeats, as audio_windows does.
            padded = clean[torch.arange(total).clamp(max=n_frames - 1)]
            mask = face_mask(face_box, config.latent_size, settings.face_dilation)
            classifiers = Classifiers(self.classifiers["face"], self.classifiers["nonface"],
                                      mask[None].to(device), padded[None].to(device))  # fmt: skip
        started = time.perf_counter()
        images = frames_to_images(reference[None])
        ref_latent = encode_frames(self.vae, images)  # on the VAE's device
        embeds = self.image_encoder(images) if self.image_encoder else None
        audio = audio_windows(clean, 0, total, config.audio_context)[None].to(device)
        shape = (1, len(starts), config.frames, config.latent_channels, config.latent_size,
                 config.latent_size)  # fmt: skip
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        with autocast(device, settings.precision):
            latents = sample_long_video(self.model, self.scheduler, ref_latent, audio, n_frames,
                                        settings.steps, noise, image_embeds=embeds,
                                        guidance=weights, classifiers=classifiers,
                                        callback=callback,
                                        audio_cfg=settings.audio_cfg)[0]  # fmt: skip
        if is_cuda(device):
            torch.cuda.synchronize(device)  # the seconds measure finished work
        return latents.float(), len(starts), time.perf_counter() - started


def clip_seed(seed: int, clip_id: str) -> int:
    """Per-clip noise seed, the same in every guidance mode (a paired comparison)."""
    return seed * 1_000_003 + zlib.crc32(clip_id.encode())


def read_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file; :class:`InputError` when unreadable."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def detect_face(image: np.ndarray, path: str | Path, min_score: float) -> np.ndarray:
    """Pixel face box ``(4,)`` of the most confident face; :class:`InputError` without one."""
    from pipeline.features.pose.faces import FaceDetector

    with FaceDetector(min_score=min_score) as detector:
        box = detector.detect(image[None])[0]
    if not np.isfinite(box[:4]).all():
        raise InputError(f"{path}: no face or person found in the image")
    return box[:4]


def load_speech(path: str | Path, min_seconds: float) -> np.ndarray:
    """16 kHz mono speech from any audio file ffmpeg/librosa read; :class:`InputError` if bad."""
    from pipeline.io.audio import load_audio

    if not Path(path).is_file():  # named as the CLI's audio input, like read_image's
        raise InputError(f"{path}: audio file not found")
    try:
        wave = load_audio(path)
    except MediaError as error:
        raise InputError(str(error)) from None
    if wave.size == 0:
        raise InputError(f"{path}: no audio samples (not an audio file?)")
    check_speech(wave, path, min_seconds)
    return wave


__all__ = [
    "Animator", "AnimatorSettings", "Generated", "InputError", "check_speech", "clip_seed",
    "crop_reference", "detect_face", "load_speech", "read_image",
]  # fmt: skip
