"""Offline speech synthesis with espeak-ng, for the sample corpus's speakers.

espeak-ng is called with an argument list (never through a shell) and writes a WAV file, which
is read back, trimmed of its leading/trailing silence, peak-normalised and resampled to mono
``float32`` at the pipeline's sample rate. espeak-ng is deterministic, so the same text, voice,
pitch and speed always give the same samples.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from pipeline.io.audio import read_audio

ESPEAK = "espeak-ng"


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: ``name`` (e.g. ``en-us+m3``), pitch ``0..99`` and speed in words/min."""

    name: str
    pitch: int
    speed: int


def espeak_command(voice: Voice, text: str, wav_path: str | Path) -> list[str]:
    """The espeak-ng argument list that writes ``text`` spoken by ``voice`` to ``wav_path``."""
    # "--" ends the options, so a sentence starting with "-" is read as text.
    return [
        ESPEAK,
        "-v",
        voice.name,
        "-p",
        str(voice.pitch),
        "-s",
        str(voice.speed),
        "-w",
        str(wav_path),
        "--",
        text,
    ]


def _trim(audio: np.ndarray, rate: int, threshold: float = 0.01) -> np.ndarray:
    """Cut leading and trailing near-silence (espeak pads ~0.2 s), keeping 20 ms either side."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(np.abs(audio).max(), 1e-9))
    if loud.size == 0:
        return audio[:0]
    keep = int(0.02 * rate)
    return audio[max(loud[0] - keep, 0) : loud[-1] + keep + 1]


def synthesize(text: str, voice: Voice, sample_rate: int = 16000, peak: float = 0.5) -> np.ndarray:
    """Speak ``text``: mono float32 samples at ``sample_rate``, shape ``(n,)``, max |x| = ``peak``.

    Raises ``RuntimeError`` naming the command when espeak-ng is missing or fails.
    """
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(
            f"'{ESPEAK}' not found on PATH; the sample corpus needs it for speech "
            f"(e.g. apt-get install espeak-ng)"
        )
    with tempfile.TemporaryDirectory(prefix="paha-tts-") as tmp:
        wav_path = Path(tmp) / "speech.wav"
        command = espeak_command(voice, text, wav_path)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.exists() or "Error" in result.stderr:
            detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
            raise RuntimeError(f"{' '.join(command[:-1])} '...' failed: {detail}")
        audio, rate = read_audio(wav_path)  # at espeak-ng's own rate, resampled below
    audio = _trim(audio, rate)
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for voice {voice.name!r}: {text!r}")
    if rate != sample_rate:
        # Polyphase resampling is exact integer arithmetic on the ratio, hence deterministic.
        g = gcd(sample_rate, rate)
        audio = resample_poly(audio, sample_rate // g, rate // g).astype(np.float32)
    return (audio * (peak / np.abs(audio).max())).astype(np.float32)
