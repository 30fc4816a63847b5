"""The demo's generation (:func:`pipeline.web.demo.make_video`) without a browser: the tiny
models of tests/inference/test_animate.py, the progress it reports and its one-line errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile

from pipeline.corpus.sample.tts import Voice
from pipeline.errors import InputError
from pipeline.io.audio import SAMPLE_RATE, frame_count
from pipeline.io.media import count_frames, probe
from pipeline.web.demo import DemoModels, ModelPaths, make_video
from pipeline.web.examples import example_files, render_speaker_still
from tests.inference.test_animate import _speech, workspace  # noqa: F401 (a fixture)

WEIGHTS = {"lambda_nonface": 1.0, "lambda_face": 0.1, "lambda_diff": 0.25, "rate": 0.5}


def _photo(root):
    return cv2.cvtColor(cv2.imread(str(root / "astronaut.png")), cv2.COLOR_BGR2RGB)


def test_a_video_with_the_progress_of_every_step(workspace, tmp_path):  # noqa: F811
    models = DemoModels(workspace / "params.yaml", ModelPaths.under(workspace / "models"))
    speech = _speech(tmp_path / "s.wav", "A short line.", Voice("en-us", 50, 160))
    calls = []
    video = make_video(models, _photo(workspace), speech, "sg", 1, 3, WEIGHTS,
                       tmp_path / "out.mp4", lambda *a: calls.append(a))  # fmt: skip
    wave, rate = soundfile.read(speech)
    assert video.frames == frame_count(len(wave), rate, 25.0) == count_frames(video.path)
    assert probe(video.path).has_audio
    # (done, total, segment, segments, step) after each of segments x 3 DDIM steps.
    total = video.segments * 3
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert calls[0][2:] == (1, video.segments, 1) and calls[-1][2:] == (video.segments,) * 2 + (3,)
    assert "3 DDIM steps" in video.summary and "mode sg" in video.summary
    # A photo through a tiny untrained VAE: far from any training domain, said with the video.
    assert video.warning and video.summary.startswith(f"**warning:** {video.warning}")
    make_video(models, _photo(workspace), speech, "none", 1, 1, WEIGHTS, tmp_path / "b.mp4")
    assert models.loads == 1  # the networks load once per process


def test_one_line_errors(workspace, tmp_path):  # noqa: F811
    models = DemoModels(workspace / "params.yaml", ModelPaths.under(workspace / "models"))
    photo = _photo(workspace)
    speech = _speech(tmp_path / "ok.wav", "Fine speech here.", Voice("en-us", 50, 160))
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(SAMPLE_RATE * 2), SAMPLE_RATE)
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    no_classifiers = DemoModels(workspace / "params.yaml",
                                ModelPaths.under(workspace / "models",
                                                 classifiers=tmp_path / "none"))  # fmt: skip
    gone = ModelPaths.under(workspace / "models", univdm=tmp_path / "gone")
    no_univdm = DemoModels(workspace / "params.yaml", gone)
    cases = [
        (models, np.full((96, 96, 3), 200, np.uint8), speech, "dg",
         "reference image: no face or person found"),
        (models, None, speech, "dg", "no reference image"),
        (models, photo, None, "dg", "no speech"),
        (models, photo, silent, "dg", "silent.wav: audio is silent"),
        (models, photo, text, "dg", "notes.txt: unreadable audio"),
        (no_classifiers, photo, speech, "sg", "none/face/final: model folder not found"),
        (no_univdm, photo, speech, "none", "gone: model folder not found"),
    ]  # fmt: skip
    for which, image, audio, mode, message in cases:
        with pytest.raises(InputError) as error:
            make_video(which, image, audio, mode, 0, 1, WEIGHTS, tmp_path / "x.mp4")
        assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    with pytest.raises(InputError, match=r"guidance rate must be in \[0, 1\]"):
        make_video(models, photo, speech, "dg", 0, 1, WEIGHTS | {"rate": 2}, tmp_path / "x.mp4")
    with pytest.raises(InputError, match="fill in every guidance weight"):
        make_video(models, photo, speech, "dg", 0, 1, WEIGHTS | {"lambda_face": None},
                   tmp_path / "x.mp4")  # fmt: skip
    assert not (tmp_path / "x.mp4").exists()
    # Without classifiers, mode none still runs.
    assert make_video(no_classifiers, photo, speech, "none", 0, 1, WEIGHTS,
                      tmp_path / "n.mp4").frames > 0  # fmt: skip


def test_shipped_examples_are_small_and_usable():
    from pipeline.inference.animator import detect_face, load_speech, read_image

    files = example_files()
    assert sum(path.stat().st_size for path in files.values()) < 300_000
    image = read_image(files["image"])
    assert image.shape == (256, 256, 3)
    np.testing.assert_array_equal(image, render_speaker_still())  # the generator makes them
    box = detect_face(image, files["image"], 0.5)
    assert 0 < box[0] < box[2] < 256 and 0 < box[1] < box[3] < 256
    for language in ("en", "zh"):
        wave = load_speech(files[language], 1.0)
        assert 1.5 < len(wave) / SAMPLE_RATE < 4.0, language
