"""``paha demo`` in a real browser (headless Chromium through Selenium) on the tiny models of
tests/inference/test_animate.py: upload a photo and a WAV, press the button, see the progress
and get an mp4 with the speech; a silent WAV or a photo without a face is an error line in the
page. Skips without gradio, selenium, chromium or chromedriver."""

from __future__ import annotations

import re
import urllib.request

import cv2
import numpy as np
import pytest
import soundfile

from pipeline.corpus.sample.tts import Voice
from pipeline.io.audio import SAMPLE_RATE, frame_count
from pipeline.io.media import count_frames, probe
from tests.inference.test_animate import _speech, workspace  # noqa: F401 (a fixture)
from tests.web.helpers import free_port, screenshot, wait_for

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[web]')")
By = pytest.importorskip("selenium.webdriver.common.by", reason="selenium is not installed").By


@pytest.fixture(scope="module")
def demo(workspace):  # noqa: F811
    """The demo served on a loopback port: ``(url, DemoModels)``."""
    from pipeline.web.demo import DemoModels, ModelPaths, build_demo, launch

    models = DemoModels(workspace / "params.yaml", ModelPaths.under(workspace / "models"))
    blocks = build_demo(models)
    _, url, _ = launch(blocks, "127.0.0.1", free_port(), block=False)
    yield url.rstrip("/"), models
    blocks.close()


def _upload(browser, url, image, audio):
    browser.get(url)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference input[type=file]"),
             what="the demo page")  # fmt: skip
    browser.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(image))
    browser.find_element(By.CSS_SELECTOR, "#speech input[type=file]").send_keys(str(audio))
    # Uploaded: the photo shows as an <img>, the speech as a waveform with a duration.
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference img"), what="the photo")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#speech audio, #speech canvas, "
                                           "#speech [data-testid=waveform-x]"),
             what="the speech upload")  # fmt: skip


def _set_number(browser, selector, value):
    field = browser.find_element(By.CSS_SELECTOR, selector)
    field.clear()
    field.send_keys(str(value))
    field.send_keys("\t")


def _status(browser) -> str:
    return browser.find_element(By.ID, "status").text.strip()


def test_upload_generate_and_download(browser, demo, workspace, tmp_path):  # noqa: F811
    url, models = demo
    audio = _speech(tmp_path / "hello.wav", "Hello from the browser, this is a test.",
                    Voice("en-us", 50, 160))  # fmt: skip
    _upload(browser, url, workspace / "astronaut.png", audio)
    _set_number(browser, "#steps input[type=number]", 4)
    browser.find_element(By.CSS_SELECTOR, "#mode input[value=sg]").click()
    browser.find_element(By.ID, "generate").click()
    # The progress bar names the segment and the DDIM step while it samples.
    progress = wait_for(lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR,
                                 ".progress-level") if "DDIM step" in e.text],
                        what="the progress bar")  # fmt: skip
    assert re.search(r"segment \d+/\d+, DDIM step [1-4]/4", progress[0]), progress
    src = wait_for(lambda: next((v.get_attribute("src") for v in browser.find_elements(
        By.CSS_SELECTOR, "#video video") if v.get_attribute("src")), None),
        what="the video")  # fmt: skip
    served = tmp_path / "served.mp4"
    with urllib.request.urlopen(src, timeout=30) as response:
        served.write_bytes(response.read())
    info = probe(served)
    wave, rate = soundfile.read(audio)
    assert info.has_audio and info.width == info.height == 32
    assert count_frames(served) == frame_count(len(wave), rate, 25.0)
    assert abs(info.duration_s - len(wave) / rate) < 0.1
    link = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#download a[href]"),
                    what="the download link")  # fmt: skip
    assert link[0].get_attribute("href").endswith(".mp4")
    assert "mode sg" in _status(browser) and "4 DDIM steps" in _status(browser)
    assert "far from what this model was trained on" in _status(browser)
    assert "model: UniVDM" in browser.find_element(By.TAG_NAME, "body").text
    screenshot(browser, "demo.png")
    assert models.loads == 1


def test_input_errors_show_in_the_page(browser, demo, workspace, tmp_path):  # noqa: F811
    url, _ = demo
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(2 * SAMPLE_RATE), SAMPLE_RATE)
    _upload(browser, url, workspace / "astronaut.png", silent)
    browser.find_element(By.ID, "generate").click()
    text = wait_for(lambda: "error" in _status(browser) and _status(browser), what="an error")
    assert "silent.wav: audio is silent" in text and "Traceback" not in text, text
    assert not browser.find_elements(By.CSS_SELECTOR, "#video video[src]")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((128, 128, 3), 200, np.uint8))
    speech = _speech(tmp_path / "ok.wav", "Fine speech.", Voice("en-us", 50, 160))
    _upload(browser, url, blank, speech)
    browser.find_element(By.ID, "generate").click()
    text = wait_for(lambda: "no face" in _status(browser) and _status(browser), what="no face")
    assert text.startswith("error: reference image: no face or person found"), text


def test_two_requests_at_once_queue(demo, workspace, tmp_path):  # noqa: F811
    """Two clients submit together: both get their video, one after the other."""
    from gradio_client import Client, handle_file

    url, models = demo
    speech = _speech(tmp_path / "q.wav", "Queue.", Voice("en-us", 50, 160))
    clients = [Client(url, verbose=False) for _ in range(2)]
    jobs = [client.submit(handle_file(str(workspace / "astronaut.png")), handle_file(str(speech)),
                          "none", seed, 1, 1.0, 0.1, 0.25, 0.5, api_name="/generate")
            for seed, client in enumerate(clients)]  # fmt: skip
    results = [job.result(timeout=120) for job in jobs]
    for video, _, status in results:
        assert video and "error" not in status, status
    assert "seed0" in str(results[0][0]) and "seed1" in str(results[1][0])
    assert models.loads == 1
