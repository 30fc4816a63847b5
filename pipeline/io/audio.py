"""Audio loading and per-video-frame audio features (Section 4.1.1, "Audio layer").

Features are aligned with the video: one row per video frame, shape ``(n_frames, dim)`` float32.

- ``mel``: librosa log-mel spectrogram with a hop of exactly one video frame (640 samples at
  16 kHz and 25 fps), so row ``f`` summarises the audio around frame ``f``. Needs no weights.
- ``wav2vec2``: hidden states of a local transformers Wav2Vec2 model, several layers concatenated
  (the paper concatenates "features from various modules of the pre-trained wav2vec"), linearly
  resampled from the model's 50 Hz to the video frame rate.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import librosa
import numpy as np

from pipeline.errors import MissingInputError
from pipeline.io.media import MediaError, describe_file

SAMPLE_RATE = 16000


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """The pipeline's one audio reader: mono float32 in [-1, 1] and its sample rate.

    Args:
        path: a WAV/FLAC/OGG file (read by soundfile, exactly: 16-bit samples become
            ``int / 32768``) or anything else ffmpeg decodes, e.g. mp3 or a video's audio track
            (read by librosa's audioread fallback).
        sample_rate: resample to this rate (soxr, librosa's default); None keeps the file's own.

    Returns:
        ``(wave, rate)``: ``wave`` of shape ``(samples,)`` float32, channels averaged; ``rate``
        is ``sample_rate`` when given, else the file's.

    Raises:
        MediaError: naming the file, when it is missing, has no samples, or no decoder reads
            it (then the message has what the decoders said and what the file looks like: size,
            first bytes, ffprobe's verdict).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    wave, rate = _decode(path)
    if wave.size == 0:
        raise MediaError(f"{path}: no audio samples")
    if sample_rate is not None and rate != sample_rate:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        rate = sample_rate
    return wave.astype(np.float32, copy=False), int(rate)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples at the file's own rate: soundfile, else librosa (audioread)."""
    import soundfile  # librosa's own first choice; imported here to keep start-up light

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    except (soundfile.SoundFileError, RuntimeError) as error:  # not a format libsndfile reads
        soundfile_said = str(error).removeprefix(f"Error opening {str(path)!r}: ").rstrip(".")
    try:
        with warnings.catch_warnings():  # librosa warns before falling back to audioread
            # ... and audioread imports modules Python deprecates (aifc, audioop, sunau).
            warnings.simplefilter("ignore", (UserWarning, FutureWarning, DeprecationWarning))
            wave, rate = librosa.load(path, sr=None, mono=True)
    except Exception as error:  # audioread raises many types (NoBackendError has no message)
        audioread_said = str(error) or type(error).__name__
        raise MediaError(f"{path}: unreadable audio (soundfile: {soundfile_said}; audioread: "
                         f"{audioread_said}; {describe_file(path)})") from None  # fmt: skip
    return np.asarray(wave, dtype=np.float32), int(rate)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`read_audio` at ``sample_rate`` (16 kHz by default), samples only: ``(samples,)``."""
    return read_audio(path, sample_rate)[0]


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Number of video frames covering ``n_samples`` of audio (one frame per 1/fps)."""
    return int(round(n_samples / sample_rate * fps))


def frame_rms(audio: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the samples shown during each video frame, shape ``(T,)``.

    Frame ``t`` covers ``[t / fps, (t + 1) / fps)``; missing samples count as silence.
    """
    edges = np.round(np.arange(n_frames + 1) * sr / fps).astype(np.int64)
    padded = np.zeros(int(edges[-1]), np.float64)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    energy = np.concatenate([[0.0], np.cumsum(padded**2)])
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt(np.diff(energy[edges]) / counts)


def mel_features(
    wave: np.ndarray, sample_rate: int, fps: float, n_frames: int, n_mels: int = 80
) -> np.ndarray:
    """Log-mel features, one row per video frame: ``(n_frames, n_mels)`` float32.

    The hop is ``sample_rate / fps`` samples (must be whole) and the window four hops, centred on
    the frame's start time; rows beyond the audio are padded with the quietest value.
    """
    hop = sample_rate / fps
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"sample_rate {sample_rate} is not a whole multiple of fps {fps}")
    hop = int(round(hop))
    mel = librosa.feature.melspectrogram(
        y=wave.astype(np.float32), sr=sample_rate, n_fft=4 * hop, hop_length=hop,
        n_mels=n_mels, center=True,
    )  # fmt: skip
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T  # (frames, n_mels)
    return _fit_length(log_mel, n_frames).astype(np.float32)


def _fit_length(features: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or pad (repeating the minimum) to exactly ``n_frames`` rows."""
    if len(features) >= n_frames:
        return features[:n_frames]
    pad_value = features.min() if features.size else 0.0
    pad = np.full((n_frames - len(features), features.shape[1]), pad_value, features.dtype)
    return np.concatenate([features, pad])


def resample_rows(features: np.ndarray, n_frames: int) -> np.ndarray:
    """Linearly resample a ``(T_in, dim)`` sequence to ``(n_frames, dim)`` over the same span.

    Row ``i`` of the output is taken at the centre of output frame ``i``, i.e. at input position
    ``(i + 0.5) * T_in / n_frames - 0.5``.
    """
    t_in = len(features)
    if t_in == 0:
        raise ValueError("cannot resample an empty feature sequence")
    positions = (np.arange(n_frames) + 0.5) * t_in / n_frames - 0.5
    positions = np.clip(positions, 0, t_in - 1)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, t_in - 1)
    weight = (positions - lower)[:, None]
    return (features[lower] * (1 - weight) + features[upper] * weight).astype(np.float32)


class Wav2Vec2Features:
    """Concatenated hidden layers of a local Wav2Vec2 model, one row per video frame.

    Args:
        path: local folder of a transformers ``Wav2Vec2Model`` (``config.json`` + weights).
        layers: hidden-state indices to concatenate (0 is the CNN feature projection output).
        device: torch device string.
    """

    def __init__(self, path: str | os.PathLike, layers: list[int], device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, Wav2Vec2Model

        from pipeline.io.weight_files import safetensors_variant

        folder = Path(path)
        if not (folder / "config.json").exists():
            raise MissingInputError(f"{folder}: no Wav2Vec2 model here (config.json missing)")
        self.model = Wav2Vec2Model.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32,
            variant=safetensors_variant(folder, "model.safetensors", required=False),
        ).to(device).eval()  # fmt: skip
        n_hidden = self.model.config.num_hidden_layers
        bad = [layer for layer in layers if not 0 <= layer <= n_hidden]
        if bad:
            raise ValueError(f"{folder}: layers {bad} outside 0..{n_hidden}")
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
        except OSError:
            self.extractor = None  # no preprocessor_config.json: normalise ourselves
        self.layers = list(layers)
        self.device = device
        self.dim = self.model.config.hidden_size * len(self.layers)
        self._torch = torch

    def __call__(self, wave: np.ndarray, sample_rate: int, n_frames: int) -> np.ndarray:
        """Features ``(n_frames, hidden_size * len(layers))`` float32 for a mono waveform."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"wav2vec2 expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
        torch = self._torch
        if self.extractor is not None:
            inputs = self.extractor(wave, sampling_rate=sample_rate, return_tensors="pt")
            values = inputs["input_values"]
        else:
            normalised = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
            values = torch.from_numpy(normalised.astype(np.float32))[None]
        with torch.inference_mode():
            output = self.model(values.to(self.device), output_hidden_states=True)
        hidden = torch.cat([output.hidden_states[i][0] for i in self.layers], dim=-1)
        return resample_rows(hidden.float().cpu().numpy(), n_frames)
