"""Making a video from a reference image and speech with the trained artifacts (Section 4.2).

:class:`Animator` holds UniVDM, the VAE, the two PCE classifiers (for SG / DG) and the settings
the models were trained with. It prepares inputs the way training did (the reference cropped
around the person like ``cut`` and resized to the training size; audio as 16 kHz mono turned into
the same per-frame features as ``extract``), generates one frame per ``1 / fps`` of audio as
chained segments (:func:`pipeline.inference.sampling.sample_long_video`) and decodes the latents.

Used by ``paha animate`` and by the ``infer`` stage.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Params
from pipeline.curation.cut import crop_box
from pipeline.data.face_boxes import face_mask
from pipeline.data.windows import resize_frames
from pipeline.errors import InputError
from pipeline.features.extraction import AudioFeaturizer
from pipeline.inference.guidance import Classifiers, GuidanceWeights
from pipeline.inference.sampling import sample_long_video, segment_starts
from pipeline.io.audio import SAMPLE_RATE, frame_count
from pipeline.io.media import MediaError
from pipeline.models.classifier import SyncClassifier
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, audio_windows
from pipeline.models.vae import decode_latents, encode_frames, frames_to_images, images_to_frames

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


def crop_reference(image: np.ndarray, face_box: np.ndarray, params: Params) -> tuple:
    """Crop and resize a reference image as ``cut`` + training did.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        face_box: ``(4,)`` pixel box ``x0, y0, x1, y1`` of the face in ``image``.

    Returns:
        ``(frame (S, S, 3) uint8, face box (4,) normalised to the crop)``.
    """
    height, width = image.shape[:2]
    centre = np.array([[(face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2]])
    policy = "center" if params.cut.crop == "pad" else params.cut.crop
    x0, y0, side, _ = crop_box(width, height, policy, centre, params.cut.person_scale)
    crop = image[int(round(y0)) : int(round(y0 + side)), int(round(x0)) : int(round(x0 + side))]
    frame = resize_frames(crop[None], params.train_univdm.size)[0]
    box = (np.asarray(face_box[:4], np.float64) - [x0, y0, x0, y0]) / side
    return frame, np.clip(box, 0.0, 1.0).astype(np.float32)


class Animator:
    """Trained UniVDM (+ VAE, + classifiers) ready to generate.

    Args:
        params: the pipeline params the models were trained with.
        univdm_dir: folder written by ``UniVDM.save`` (``data/models/univdm/final``).
        vae_dir: ``data/models/vae``.
        classifier_dirs: ``{"face": ..., "nonface": ...}`` final classifier folders, or None
            (unguided only).
    """

    def __init__(self, params: Params, univdm_dir: str | Path, vae_dir: str | Path,
                 classifier_dirs: dict[str, str | Path] | None = None):  # fmt: skip
        from pipeline.models.vae import resolve_vae

        self.params = params
        for path in [univdm_dir, vae_dir, *(classifier_dirs or {}).values()]:
            if not Path(path).is_dir():
                raise FileNotFoundError(f"{path}: model folder not found (run `dvc repro` or "
                                        "give the path)")  # fmt: skip
        self.model = UniVDM.load(univdm_dir).eval()
        self.vae = resolve_vae(vae_dir).eval()
        self.scheduler = noise_scheduler(
            params.train_univdm.num_train_timesteps, params.train_univdm.beta_schedule
        )
        self.classifiers = None
        if classifier_dirs:
            self.classifiers = {
                kind: SyncClassifier.load(path).eval() for kind, path in classifier_dirs.items()
            }
        self.image_encoder = None
        if params.train_univdm.clip:
            from pipeline.models.image_encoder import ClipImageEncoder

            self.image_encoder = ClipImageEncoder(params.train_univdm.clip)
        self._featurizer = None  # made on first use: `infer` reads extracted features

    @property
    def segment_seconds(self) -> float:
        return self.model.config.frames / self.params.cut.fps

    def audio_features(self, wave: np.ndarray) -> np.ndarray:
        """``(n_frames, A)`` features, one row per ``1 / fps`` of the 16 kHz waveform."""
        if self._featurizer is None:  # wav2vec2 loads a model: only when audio comes in raw
            self._featurizer = AudioFeaturizer(self.params.extract, self.params.cut.fps)
        n_frames = frame_count(len(wave), SAMPLE_RATE, self.params.cut.fps)
        return self._featurizer(wave, n_frames)

    def weights(self, mode: str) -> GuidanceWeights:
        infer = self.params.infer
        return GuidanceWeights(mode=mode, lambda_nonface=infer.lambda_nonface,
                               lambda_face=infer.lambda_face, lambda_diff=infer.lambda_diff,
                               rate=infer.guidance_rate, dg_form=infer.dg_form)  # fmt: skip

    @torch.no_grad()
    def generate(self, reference: np.ndarray, face_box: np.ndarray, features: np.ndarray,
                 mode: str, seed: int, callback=None) -> Generated:  # fmt: skip
        """A video of ``len(features)`` frames.

        Args:
            reference: ``(S, S, 3)`` uint8 reference frame at the training size.
            face_box: ``(4,)`` normalised face box of the reference (``M_f`` of guidance).
            features: ``(n_frames, A)`` per-frame audio features.
            mode: ``none``, ``sg`` or ``dg``.
            seed: draws every segment's initial noise.
            callback: called after each DDIM step (progress).
        """
        config = self.model.config
        n_frames = len(features)
        starts = segment_starts(n_frames, config.frames)
        total = starts[-1] + config.frames
        weights = self.weights(mode)
        classifiers = None
        clean = torch.from_numpy(np.asarray(features, np.float32))
        if weights.guided_steps(self.params.infer.steps):
            if not self.classifiers:
                raise FileNotFoundError(f"guidance mode {mode!r} needs the face and non-face "
                                        "classifiers (data/models/classifier)")  # fmt: skip
            # Past the audio's end the last row repeats, as audio_windows does.
            padded = clean[torch.arange(total).clamp(max=n_frames - 1)]
            mask = face_mask(face_box, config.latent_size, self.params.infer.face_dilation)
            classifiers = Classifiers(self.classifiers["face"], self.classifiers["nonface"],
                                      mask[None], padded[None])  # fmt: skip
        started = time.perf_counter()
        images = frames_to_images(reference[None])
        ref_latent = encode_frames(self.vae, images)
        embeds = self.image_encoder(images) if self.image_encoder else None
        audio = audio_windows(clean, 0, total, config.audio_context)[None]
        shape = (1, len(starts), config.frames, config.latent_channels, config.latent_size,
                 config.latent_size)  # fmt: skip
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        latents = sample_long_video(self.model, self.scheduler, ref_latent, audio, n_frames,
                                    self.params.infer.steps, noise, image_embeds=embeds,
                                    guidance=weights, classifiers=classifiers,
                                    callback=callback)[0]  # fmt: skip
        seconds = time.perf_counter() - started
        frames = images_to_frames(decode_latents(self.vae, latents))
        return Generated(latents, frames, len(starts), seconds)


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

    try:
        wave = load_audio(path)
    except MediaError as error:
        raise InputError(str(error)) from None
    if wave.size == 0:
        raise InputError(f"{path}: no audio samples (not an audio file?)")
    check_speech(wave, path, min_seconds)
    return wave


__all__ = [
    "Animator", "Generated", "InputError", "check_speech", "clip_seed", "crop_reference",
    "detect_face", "load_speech", "read_image",
]  # fmt: skip
