"""``paha review`` in a real browser (headless Chromium through Selenium) over a tiny curated
folder: filter, reject a kept clip and keep a rejected one with notes, see the decisions as
such, and a rerun of ``curate`` honours the overrides file the page wrote."""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request

import pandas as pd
import pytest

from pipeline.config import CurateParams
from pipeline.curation.curate import curate
from pipeline.curation.overrides import read_overrides
from pipeline.curation.report import write_report
from pipeline.io import tables
from pipeline.web.review import review_app
from tests.curation.test_curate_report import FaceWhereBright, UpperBody, _clip
from tests.web.helpers import ThreadServer, screenshot, wait_for

PARAMS = CurateParams(min_duration_s=1.0, analyse_every=3, sheet_frames=4, workers=1,
                      overrides="overrides.csv")  # fmt: skip


def _clips(root) -> pd.DataFrame:
    return pd.DataFrame([
        _clip(root, "anna-001", face=True, speaker="anna"),
        _clip(root, "anna-002", face=True, speaker="anna"),
        _clip(root, "ben-001", face=False, speaker="ben"),
        _clip(root, "ben-002", face=True, speaker="ben", kept=False, reasons=["ffmpeg failed"]),
    ])  # fmt: skip


def _curate(root):
    """``curate`` as the stage runs it: table + report (contact sheets) under root/curated."""
    result = curate(_clips(root), root, PARAMS, FaceWhereBright, UpperBody, progress=False)
    tables.write_table(result.table, root / "curated" / "clips.parquet", tables.CURATED)
    write_report(result, root, root / "curated")
    return result.table.set_index("clip_id")


@pytest.fixture
def review(tmp_path):
    """A curated folder and the review page served over it: ``(url, root)``."""
    before = _curate(tmp_path)
    assert before["kept"].tolist() == [True, True, False, False]
    server = ThreadServer(review_app(tmp_path / "curated", tmp_path / "overrides.csv", PARAMS))
    yield server.url, tmp_path
    server.stop()


def _cards(browser):
    from selenium.webdriver.common.by import By

    return [card.get_attribute("data-clip") for card in
            browser.find_elements(By.CSS_SELECTOR, "div.clip")]  # fmt: skip


def _submit(browser, button) -> None:
    """Click a form's ``button`` and wait until the page it leads to has loaded."""
    from selenium.webdriver.common.by import By

    old = browser.find_element(By.TAG_NAME, "html")

    def gone():
        try:
            old.is_enabled()  # raises once the old document is replaced
        except Exception:
            return browser.execute_script("return document.readyState") == "complete"
        return False

    button.click()
    wait_for(gone, what="the next page")


def _decide(browser, clip_id, note, button):
    from selenium.webdriver.common.by import By

    card = browser.find_element(By.CSS_SELECTOR, f'div.clip[data-clip="{clip_id}"]')
    field = card.find_element(By.CSS_SELECTOR, "input[name=note]")
    field.clear()
    field.send_keys(note)
    _submit(browser, card.find_element(By.CSS_SELECTOR, f"button[value={button}]"))
    assert f"Saved {clip_id}: {button}." in browser.find_element(By.ID, "message").text


def test_review_in_the_browser_and_curate_honours_it(browser, review):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, root = review
    browser.get(url)
    assert _cards(browser) == ["anna-001", "anna-002", "ben-001", "ben-002"]
    # Each clip has its measurements, reasons and a contact sheet that loads.
    ben = browser.find_element(By.CSS_SELECTOR, 'div.clip[data-clip="ben-001"]')
    assert "face found in 0% < 90% of analysed frames" in ben.text
    assert ben.find_element(By.CSS_SELECTOR, "td.bad").text == "0%"  # the failing measurement
    loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    assert browser.execute_script(loaded)
    # Filters: status, then reason, then speaker.
    Select(browser.find_element(By.ID, "status")).select_by_value("rejected")
    _submit(browser, browser.find_element(By.ID, "apply"))
    assert _cards(browser) == ["ben-001", "ben-002"]
    Select(browser.find_element(By.ID, "reason")).select_by_value("face_missing")
    _submit(browser, browser.find_element(By.ID, "apply"))
    assert _cards(browser) == ["ben-001"]
    browser.get(f"{url}/?speaker=anna")
    assert _cards(browser) == ["anna-001", "anna-002"]

    # Reject a kept clip and keep a rejected one, each with a note.
    browser.get(f"{url}/?status=kept")
    _decide(browser, "anna-001", "blurry & dark", "reject")
    assert "status=kept" in browser.current_url and _cards(browser) == ["anna-001", "anna-002"]
    browser.get(f"{url}/?status=rejected")
    _decide(browser, "ben-001", "the face is there, the detector missed it", "keep")
    overrides = read_overrides(root / "overrides.csv")
    assert [(o.clip_id, o.decision, o.note) for o in overrides.values()] == [
        ("anna-001", "reject", "blurry & dark"),
        ("ben-001", "keep", "the face is there, the detector missed it"),
    ]
    # A decision in the file is shown as such (and as not applied by curate yet).
    browser.get(f"{url}/?status=decided")
    assert _cards(browser) == ["anna-001", "ben-001"]
    anna = browser.find_element(By.CSS_SELECTOR, 'div.clip[data-clip="anna-001"]')
    assert "reviewer: reject" in anna.text and "applies at the next dvc repro" in anna.text
    note = anna.find_element(By.CSS_SELECTOR, "input[name=note]").get_attribute("value")
    pressed = anna.find_element(By.CSS_SELECTOR, "button[value=reject]").get_attribute("class")
    assert note == "blurry & dark" and "active" in pressed
    browser.get(url)
    screenshot(browser, "review.png")

    # `curate` reruns (what `dvc repro` does) and honours both decisions.
    after = _curate(root)
    assert not after.at["anna-001", "kept"] and after.at["anna-001", "override"] == "reject"
    assert "rejected by reviewer: blurry & dark" in list(after.at["anna-001", "reasons"])
    assert after.at["ben-001", "kept"] and after.at["ben-001", "override"] == "keep"
    browser.get(f"{url}/?status=decided")  # the page reads the new table: nothing pending
    assert "applies at the next dvc repro" not in browser.find_element(By.TAG_NAME, "body").text


def _post(url, **form):
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/decide", data), timeout=30) as r:
        return r.geturl()


def test_two_reviewers_at_once_and_a_bad_clip(review):
    """Concurrent POSTs both land; an unknown clip is an error on the page, nothing written."""
    url, root = review
    threads = [threading.Thread(target=_post, args=(url,),
                                kwargs={"clip_id": c, "decision": d, "note": f"by {c}"})
               for c, d in (("anna-002", "reject"), ("ben-002", "keep"))
               for _ in range(5)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {k: o.decision for k, o in read_overrides(root / "overrides.csv").items()} == {
        "anna-002": "reject", "ben-002": "keep"}  # fmt: skip
    landed = _post(url, clip_id="nobody", decision="keep", note="")
    assert "error=" in landed and "nobody" in urllib.parse.unquote_plus(landed)
    assert _post(url, clip_id="anna-002", decision="clear", back="status=kept").endswith(
        "status=kept&done=anna-002%3A+decision+cleared#clip-anna-002")  # fmt: skip
    assert list(read_overrides(root / "overrides.csv")) == ["ben-002"]
    with urllib.request.urlopen(f"{url}/overrides.csv", timeout=30) as response:
        assert response.read().decode() == "clip_id,decision,note\nben-002,keep,by ben-002\n"
