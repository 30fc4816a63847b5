"""Example inputs of ``paha demo``: a rendered sample-corpus speaker and espeak-ng speech.

The files ship in ``pipeline/web/examples/`` (small: a 256 x 256 PNG and two 16 kHz mono WAVs
of about two seconds). ``python -m pipeline.web.examples [FOLDER]`` writes them again from the
sample corpus's first English speaker (:mod:`pipeline.corpus.sample`) and the voices of its
first English and Mandarin speakers.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np

# One sentence per language, short so the files stay small.
SENTENCES = {
    "en": "Good evening, and welcome to the news.",
    "zh": "晚上好，欢迎收看新闻。",
}
SPEAKER_PNG = "speaker.png"
SIZE = 256


def example_folder() -> Path:
    """The shipped folder (inside the installed package)."""
    return Path(str(resources.files("pipeline.web").joinpath("examples")))


def example_files() -> dict[str, Path]:
    """``{"image": PNG, "en": WAV, "zh": WAV}`` in :func:`example_folder`."""
    folder = example_folder()
    return {"image": folder / SPEAKER_PNG, **{k: folder / f"speech_{k}.wav" for k in SENTENCES}}


def render_speaker_still(size: int = SIZE) -> np.ndarray:
    """The first English sample speaker in a neutral pose: ``(size, size, 3)`` uint8 RGB."""
    from pipeline.corpus.sample.drawing import background, draw
    from pipeline.corpus.sample.figure import Controls, figure
    from pipeline.corpus.sample.render import _PROFILES  # the corpus's speaker table

    profile = _PROFILES["en"][0]
    character = profile.character
    pose = figure(character, Controls(mouth_open=0.15), size, profile.style.front_hand)
    return np.clip(draw(character, pose, background(character, size)), 0, 255).astype(np.uint8)


def write_examples(folder: str | Path) -> dict[str, Path]:
    """Write the speaker PNG and one WAV per language of :data:`SENTENCES` into ``folder``."""
    import soundfile

    from pipeline.corpus.sample.render import _PROFILES, pcm16
    from pipeline.corpus.sample.tts import synthesize
    from pipeline.io.audio import SAMPLE_RATE
    from pipeline.io.outputs import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {"image": folder / SPEAKER_PNG}
    write_png(render_speaker_still(), written["image"])
    for language, text in SENTENCES.items():
        wave = synthesize(text, _PROFILES[language][0].voice, SAMPLE_RATE)
        path = folder / f"speech_{language}.wav"
        soundfile.write(path, pcm16(wave), SAMPLE_RATE, subtype="PCM_16")
        written[language] = path
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("examples")
    for path in write_examples(target).values():
        print(path)
