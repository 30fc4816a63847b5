"""The built-in offline "sample" corpus: rendered news anchors reading news sentences.

``render_sample_corpus(params, seed, fps, out_dir)`` writes one mp4 (H.264 + AAC) per speaker
to ``out_dir / f"{video_id}.mp4"`` and returns the interval table (``tables.RAW``, one row per
clip) and the ground-truth poses of every frame (``tables.RAW_POSE``).

Each speaker alternates languages (``sample_en_1``, ``sample_zh_1``, ``sample_en_2``, ...), has
its own espeak-ng voice, cartoon character (:mod:`.figure`, :mod:`.drawing`) and gesture style
(:mod:`.motion`). A speaker's video is its clips back to back: each clip is one or two sentences
from ``sentences/{language}.txt`` whose speech fits ``[min_clip_s, max_clip_s]`` with small
margins, separated by 0.5-1.0 s of near-silence (a -70 dBFS noise floor, so SNR estimates stay
finite). Everything is a deterministic function of the seed: the same seed gives identical audio
samples and keypoints. Speakers render in parallel (two processes).
"""

from __future__ import annotations

import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import SampleCorpusParams
from pipeline.io import tables
from pipeline.io.media import write_video
from pipeline.io.pool import map_ordered

from .drawing import background, draw
from .figure import Character, figure
from .motion import GestureStyle, audio_motion, ground_truth
from .tts import Voice, synthesize

SAMPLE_RATE = 16000
SENTENCES_DIR = Path(__file__).parent / "sentences"
LANGUAGES = ("en", "zh")
MARGIN_S = 0.15  # silence kept either side of a clip's speech
SENTENCE_PAUSE_S = 0.35  # pause between two sentences of one clip
LEAD_S = 0.5  # silence before the first and after the last clip
NOISE_FLOOR = 3e-4  # std of the background noise (about -70 dBFS)


@dataclass(frozen=True)
class SpeakerProfile:
    voice: Voice
    character: Character
    style: GestureStyle


# Mandarin uses espeak-ng's pinyin voice: the plain ``cmn`` voice turns many characters into
# pinyin with tone digits and reads those as English words ("ni three").
# fmt: off
_PROFILES: dict[str, list[SpeakerProfile]] = {
    "en": [
        SpeakerProfile(
            Voice("en-us", 40, 165),
            Character(skin=(232, 190, 160), jacket=(34, 46, 80), shirt=(240, 240, 236),
                      hair=(70, 45, 30), lips=(190, 100, 95), iris=(70, 100, 140),
                      bg_top=(150, 180, 215), bg_bottom=(40, 70, 120), hair_style="short",
                      tie=(165, 30, 40)),
            GestureStyle(right_prob=0.5, both_prob=0.6, beat_amp=0.084, lateral=0.4,
                         front_hand="right"),
        ),
        SpeakerProfile(
            Voice("en-gb+f3", 60, 158),
            Character(skin=(165, 115, 85), jacket=(125, 32, 48), shirt=(238, 228, 205),
                      hair=(30, 22, 20), lips=(150, 70, 70), iris=(60, 40, 25),
                      bg_top=(200, 192, 180), bg_bottom=(95, 85, 75), hair_style="long",
                      face_w=0.12, face_h=0.16, shoulder_x=0.235, neck_w=0.055, palm=0.08),
            GestureStyle(right_prob=0.2, both_prob=0.15, beat_amp=0.07, lateral=0.6,
                         rest_x=0.15, nod=0.01, front_hand="left"),
        ),
        SpeakerProfile(
            Voice("en-us+m3", 30, 175),
            Character(skin=(120, 82, 58), jacket=(95, 98, 105), shirt=(245, 245, 245),
                      hair=(20, 18, 18), lips=(110, 60, 55), iris=(40, 30, 20),
                      bg_top=(175, 200, 170), bg_bottom=(60, 90, 65), hair_style="short",
                      tie=(200, 170, 40), face_w=0.13, face_h=0.17, shoulder_x=0.26,
                      neck_w=0.07, palm=0.09),
            GestureStyle(right_prob=0.7, both_prob=0.4, beat_amp=0.105, lateral=0.3,
                         raise_amp=0.07, nod=0.015, sway=0.01, front_hand="right"),
        ),
        SpeakerProfile(
            Voice("en-us+f2", 55, 160),
            Character(skin=(205, 155, 120), jacket=(150, 115, 45), shirt=(250, 245, 235),
                      hair=(95, 60, 35), lips=(170, 80, 85), iris=(50, 110, 80),
                      bg_top=(160, 210, 220), bg_bottom=(40, 100, 120), hair_style="long",
                      face_w=0.12, face_h=0.162, shoulder_x=0.235, neck_w=0.055, palm=0.08),
            GestureStyle(right_prob=0.6, both_prob=0.5, beat_amp=0.063, lateral=0.5,
                         rest_x=0.14, front_hand="left"),
        ),
    ],
    "zh": [
        SpeakerProfile(
            Voice("cmn-latn-pinyin", 45, 175),
            Character(skin=(225, 185, 150), jacket=(55, 55, 62), shirt=(200, 215, 238),
                      hair=(22, 20, 22), lips=(180, 95, 90), iris=(45, 30, 22),
                      bg_top=(150, 200, 205), bg_bottom=(25, 75, 90), hair_style="side",
                      tie=(40, 70, 145), face_w=0.128, face_h=0.168, shoulder_x=0.25),
            GestureStyle(right_prob=0.9, both_prob=0.1, beat_amp=0.098, lateral=0.35,
                         raise_amp=0.065, front_hand="right"),
        ),
        SpeakerProfile(
            Voice("cmn-latn-pinyin+f2", 65, 170),
            Character(skin=(240, 205, 180), jacket=(28, 105, 115), shirt=(250, 250, 250),
                      hair=(50, 32, 25), lips=(200, 85, 95), iris=(50, 35, 25),
                      bg_top=(200, 190, 225), bg_bottom=(70, 55, 110), hair_style="bun",
                      face_w=0.12, face_h=0.16, shoulder_x=0.235, neck_w=0.055, palm=0.08),
            GestureStyle(right_prob=0.5, both_prob=0.7, beat_amp=0.112, lateral=0.5,
                         raise_amp=0.07, nod=0.01, front_hand="left"),
        ),
        SpeakerProfile(
            Voice("cmn-latn-pinyin+m3", 35, 180),
            Character(skin=(215, 170, 130), jacket=(85, 58, 40), shirt=(235, 235, 230),
                      hair=(95, 90, 85), lips=(170, 95, 85), iris=(40, 30, 25),
                      bg_top=(230, 200, 160), bg_bottom=(120, 70, 40), hair_style="side",
                      tie=(110, 25, 35), face_w=0.132, face_h=0.172, shoulder_x=0.26,
                      neck_w=0.07, palm=0.09),
            GestureStyle(right_prob=0.3, both_prob=0.3, beat_amp=0.07, lateral=0.3,
                         raise_amp=0.05, nod=0.014, front_hand="right"),
        ),
        SpeakerProfile(
            Voice("cmn-latn-pinyin+f4", 60, 172),
            Character(skin=(235, 195, 165), jacket=(32, 32, 38), shirt=(240, 200, 210),
                      hair=(18, 16, 18), lips=(190, 75, 90), iris=(40, 28, 22),
                      bg_top=(225, 170, 170), bg_bottom=(110, 40, 50), hair_style="long",
                      face_w=0.12, face_h=0.16, shoulder_x=0.235, neck_w=0.055, palm=0.08),
            GestureStyle(right_prob=0.6, both_prob=0.5, beat_amp=0.077, lateral=0.45,
                         rest_x=0.15, front_hand="right"),
        ),
    ],
}
# fmt: on


@dataclass
class SampleCorpus:
    """The rendered corpus's tables.

    ``raw``: columns of ``tables.RAW``, one row per clip interval.
    ``poses``: columns of ``tables.RAW_POSE``: ``video_id``, ``frame`` and ``keypoints`` (133 x 3
    float32 flattened: x, y in source-video pixels, score in [0, 1]).
    """

    raw: pd.DataFrame
    poses: pd.DataFrame


def speaker_ids(n_speakers: int) -> list[tuple[str, str, int]]:
    """``(speaker_id, language, index within language)`` for each speaker, languages cycling."""
    out = []
    for i in range(n_speakers):
        language = LANGUAGES[i % len(LANGUAGES)]
        k = i // len(LANGUAGES)
        out.append((f"sample_{language}_{k + 1}", language, k))
    return out


def load_sentences(language: str) -> list[str]:
    """The shipped news sentences for ``language`` (one per line, blank lines ignored)."""
    path = SENTENCES_DIR / f"{language}.txt"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    sentences = [line for line in lines if line]
    if not sentences:
        raise RuntimeError(f"{path}: no sentences")
    return sentences


# ------------------------------------------------------------------ audio track
@dataclass
class _Clip:
    speech: np.ndarray  # (n,) float32 samples
    texts: list[str]
    pad_before: float  # seconds of silence inside the interval before the speech
    pad_after: float


class _Speech:
    """Lazily synthesised sentences of one voice (each sentence spoken at most once)."""

    def __init__(self, voice: Voice, sentences: list[str]):
        self.voice, self.sentences, self.cache = voice, sentences, {}

    def __call__(self, i: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = synthesize(self.sentences[i], self.voice, SAMPLE_RATE)
        return self.cache[i]


def _plan_clips(
    speech: _Speech, n_clips: int, min_s: float, max_s: float, rng: np.random.Generator
) -> list[_Clip]:
    """Pick one or two sentences per clip so that speech + margins lie in [min_s, max_s]."""
    n = len(speech.sentences)
    order = [int(i) for i in rng.permutation(n)]
    cursor = 0
    longest = max_s - 2 * MARGIN_S
    pause = np.zeros(int(SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32)
    clips = []
    for _ in range(n_clips):
        # The next unused sentence (cycling) whose speech fits; otherwise the shortest, cut.
        first = None
        for step in range(n):
            i = order[(cursor + step) % n]
            if len(speech(i)) / SAMPLE_RATE <= longest:
                first, cursor = i, cursor + step + 1
                break
        if first is None:
            first = min(range(n), key=lambda i: len(speech(i)))
            cursor += 1
        audio, texts = speech(first), [speech.sentences[first]]
        if len(audio) / SAMPLE_RATE > longest:
            # 10 ms short of the bound, so float rounding cannot push the interval past it.
            audio = _fade_cut(audio, int((longest - 0.01) * SAMPLE_RATE))
        # A second sentence when the first is short (or now and then), if it still fits.
        if len(audio) / SAMPLE_RATE < min_s - 2 * MARGIN_S or rng.random() < 0.3:
            second = order[cursor % n]
            both = np.concatenate([audio, pause, speech(second)])
            if len(both) / SAMPLE_RATE <= longest:
                audio, texts, cursor = both, [*texts, speech.sentences[second]], cursor + 1
        duration = len(audio) / SAMPLE_RATE
        # Pad short speech with silence inside the interval, so its duration reaches min_s.
        extra = max(min_s + 1e-3 - (duration + 2 * MARGIN_S), 0.0)
        split = rng.uniform(0.3, 0.7)
        clips.append(_Clip(audio, texts, MARGIN_S + extra * split, MARGIN_S + extra * (1 - split)))
    return clips


def _fade_cut(audio: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` samples with a 50 ms fade-out (for sentences longer than a clip)."""
    out = audio[:n].copy()
    fade = min(int(0.05 * SAMPLE_RATE), n)
    out[n - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    return out


def _assemble(clips: list[_Clip], fps: float, rng: np.random.Generator):
    """Lay clips on one track: ``(audio (n,), n_frames, [(start_s, end_s), ...])``.

    The track's length is exactly ``n_frames`` video frames; intervals never overlap.
    """
    pieces, intervals = [], []
    cursor = max(LEAD_S, clips[0].pad_before + 0.1)  # the first interval starts after 0 s
    for k, clip in enumerate(clips):
        if k > 0:
            # 0.5-1.0 s of near-silence between clips, more if the padded intervals need it.
            gap = max(rng.uniform(0.5, 1.0), clips[k - 1].pad_after + clip.pad_before + 0.1)
            cursor += gap
        start = int(round(cursor * SAMPLE_RATE))
        pieces.append((start, clip.speech))
        speech_s = len(clip.speech) / SAMPLE_RATE
        begin = start / SAMPLE_RATE
        intervals.append((begin - clip.pad_before, begin + speech_s + clip.pad_after))
        cursor = begin + speech_s
    total_s = max(cursor + LEAD_S, intervals[-1][1] + 0.1)
    n_frames = int(np.ceil(total_s * fps))
    n_samples = int(round(n_frames * SAMPLE_RATE / fps))
    audio = (rng.standard_normal(n_samples) * NOISE_FLOOR).astype(np.float32)
    for start, speech in pieces:
        audio[start : start + len(speech)] += speech
    return audio, n_frames, intervals


def pcm16(audio: np.ndarray) -> np.ndarray:
    """``audio`` (float in [-1, 1]) as 16-bit samples, shape ``(n,)`` int16."""
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """Write int16 ``samples`` as mono PCM at ``SAMPLE_RATE``."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(samples.astype("<i2").tobytes())


# ------------------------------------------------------------------ one speaker
@dataclass
class SpeakerRender:
    """What a worker returns for one speaker."""

    speaker: str
    language: str
    path: str
    intervals: list[tuple[float, float]]  # (start_s, end_s) of each clip
    keypoints: np.ndarray  # (T, 133, 3) float32, T = the video's frame count


def render_speaker(
    index: int, params: SampleCorpusParams, seed: int, fps: float, out_dir: str
) -> SpeakerRender:
    """Synthesize, animate, draw and encode one speaker's video (runs in a worker process)."""
    import cv2

    cv2.setNumThreads(1)  # two workers already use both cores
    speaker, language, k = speaker_ids(index + 1)[index]
    profile = _PROFILES[language][k % len(_PROFILES[language])]
    rng = np.random.default_rng([seed, index])
    speech = _Speech(profile.voice, load_sentences(language))
    clips = _plan_clips(speech, params.clips_per_speaker, params.min_clip_s, params.max_clip_s, rng)
    audio, n_frames, intervals = _assemble(clips, fps, rng)
    # Motion is driven by exactly the samples that go into the video's audio track.
    samples = pcm16(audio)
    motion = audio_motion(samples / 32767.0, SAMPLE_RATE, fps, n_frames, profile.style, rng)
    size = params.size
    ch = profile.character
    figures = [figure(ch, c, size, profile.style.front_hand) for c in motion.controls]
    keypoints = ground_truth(figures, size, ch.finger_width(size))
    bg = background(ch, size)
    path = Path(out_dir) / f"{speaker}.mp4"
    with tempfile.TemporaryDirectory(prefix="paha-sample-") as tmp:
        wav = Path(tmp) / f"{speaker}.wav"
        _write_wav(wav, samples)
        write_video((draw(ch, f, bg) for f in figures), path, fps, audio=wav)
    return SpeakerRender(speaker, language, str(path), intervals, keypoints)


def _render_job(job: tuple) -> SpeakerRender:
    return render_speaker(*job)


def _render_all(
    params: SampleCorpusParams, seed: int, fps: float, out_dir: Path, workers: int
) -> list[SpeakerRender]:
    jobs = [(i, params, seed, fps, str(out_dir)) for i in range(params.n_speakers)]
    # spawn, not fork: librosa's onset detection runs numba code, which segfaults in a forked
    # child once the parent process has used numba's threads (seen when tests ran in one process).
    return map_ordered(_render_job, jobs, workers=workers, desc="render")


def render_sample_corpus(
    params: SampleCorpusParams, seed: int, fps: float, out_dir: Path, workers: int = 2
) -> SampleCorpus:
    """Render the sample corpus into ``out_dir`` and return its interval and pose tables."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renders = _render_all(params, seed, fps, out_dir, workers)
    rows, poses = [], []
    for r in renders:
        for k, (start, end) in enumerate(r.intervals):
            rows.append(
                {
                    "clip_id": f"{r.speaker}_{k:03d}",
                    "video_id": r.speaker,
                    "speaker": r.speaker,
                    "language": r.language,
                    "source": "sample",
                    "url": "",
                    "path": r.path,
                    "start_s": float(start),
                    "end_s": float(end),
                    "status": "ok",
                    "reason": "",
                }
            )
        n_frames = len(r.keypoints)
        flat = r.keypoints.reshape(n_frames, -1)
        poses.append(
            pd.DataFrame(
                {"video_id": r.speaker, "frame": np.arange(n_frames), "keypoints": list(flat)}
            )
        )
    raw = pd.DataFrame(rows, columns=tables.RAW.names)
    pose = pd.concat(poses, ignore_index=True)[tables.RAW_POSE.names]
    return SampleCorpus(raw=raw, poses=pose)
