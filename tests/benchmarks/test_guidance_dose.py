"""The dose-response benchmark's arms: one classifier at a time, audio CFG alone, SG / DG."""

from benchmarks.guidance_dose import _arms
from pipeline.inference.guidance import GuidanceWeights

BASE = GuidanceWeights(lambda_nonface=1.0, lambda_face=0.1, lambda_diff=0.25, rate=0.5)


def test_each_classifier_is_dosed_alone_and_cfg_runs_without_classifiers():
    arms = _arms(BASE, ["face", "nonface"], [10, 0, 1], [0.0, 2.0], compare=True)
    face = [a for a in arms if a["kind"] == "face"]
    assert [a["multiplier"] for a in face] == [0, 1, 10]  # sorted: x0 first
    assert [a["weights"].lambda_face for a in face] == [0.0, 0.1, 1.0]
    assert all(a["weights"].lambda_nonface == 0 and a["weights"].lambda_diff == 0 for a in face)
    nonface = [a for a in arms if a["kind"] == "nonface"]
    assert [a["weights"].lambda_nonface for a in nonface] == [0.0, 1.0, 10.0]
    assert all(a["weights"].lambda_face == 0 and a["mode"] == "sg" for a in nonface)
    cfg = [a for a in arms if a["kind"] == "audio_cfg"]
    assert [a["audio_cfg"] for a in cfg] == [0.0, 2.0] and {a["mode"] for a in cfg} == {"none"}
    compared = {a["kind"]: a for a in arms if a["kind"] in ("sg", "dg")}
    assert compared["dg"]["weights"] == GuidanceWeights(**{**vars(BASE), "mode": "dg"})
    assert compared["sg"]["audio_cfg"] == 0.0 and compared["sg"]["weights"].rate == 0.5
