"""Every value ``params/paper.yaml`` takes from the paper, pinned with where the paper says it.

A value the paper does not state is a reading, listed in ``READINGS`` with the reason; the
"Paper configuration" section of docs/paper-configuration.md lists the same keys (checked
below), so that a researcher sees at a glance what is the paper's and what is ours.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]

WEIGHTS = "B.4.2: (lambda_face, lambda_non-face, lambda_diff) are set to 0.1, 1, and 0.25"
# (key, value, where the paper states it: section and words)
FROM_THE_PAPER = [
    ("corpus.pats.speakers", ["jon", "chemistry", "oliver", "seth"],
     "5.1 Datasets: four talkers: Jon, Chemistry, Oliver, and Seth"),
    ("corpus.pats.max_intervals_per_speaker", 1200, "5.1 Datasets: 1,200 valid clips"),
    ("corpus.pats.min_interval_s", 4.0, "5.1 Datasets: clip lengths ranging from 4 to 15 seconds"),
    ("corpus.pats.max_interval_s", 15.0, "5.1 Datasets: clip lengths ranging from 4 to 15 seconds"),
    ("cut.fps", 25.0, "5.1 Datasets: at 25 fps"),
    ("cut.size", 512, "5.1 Datasets: training resolution uniformly adjusted to 512x512"),
    ("cut.per_source.cnas.segment_s", 5.0,
     "Appendix C: each clip contains 125 frames at 25 fps (5 seconds)"),
    ("curate.max_scene_cuts", 0, "5.1 Datasets: without cutouts or camera movements"),
    ("curate.test_fraction", 0.1, "5.1 Datasets: 90% for training and 10% for evaluation"),
    ("extract.pose_backend", "dwpose", "B.2.1: we use DWpose to extract the pose sequences"),
    ("train_univdm.size", 512, "5.1 / B.1: a spatial resolution of 512x512"),
    ("train_univdm.frames", 32, "5.1 / B.1: a fixed length of 32 frames"),
    ("train_univdm.batch_size", 8, "B.1: a batch size of 8"),
    ("train_univdm.steps", 100000, "B.1: 100k training steps"),
    ("train_univdm.lr", 5e-5, "B.1: AdamW with a learning rate of 5e-5"),
    ("train_univdm.num_train_timesteps", 1000, "5.1 / B.1: DDPM with 1000 sampling steps"),
    ("train_univdm.par.tau", 0.8, "5.1 / B.1: threshold tau_j is set to 0.8"),
    ("train_univdm.par.radius_at_512", 10.0, "5.1 / B.1: a radius r of 10"),
    ("train_univdm.par.omega1", 10.0, "5.1 / B.1: omega_1 is set to 10"),
    ("train_univdm.par.omega2", 2.0, "5.1 / B.1: omega_2 for the body region is set to 2"),
    ("negatives.checkpoint_step", 60000, "5.1 / B.3.2: G pretrained for 60k steps"),
    ("negatives.ddim_steps", 30, "5.1 / B.3.3: a 30-step DDIM sampler"),
    ("negatives.lengths", [30, 60, 90, 120], "5.1: lengths across 30, 60, 90, and 120 frames"),
    ("negatives.max_windows", 50000, "5.1: these augmentations yield 50k audio-video pairs"),
    ("negatives.positive_sources", ["pats"], "5.1: positives from the processed PATS training set"),
    ("train_classifier.face.steps", 100000, "B.3.3: 100k training steps"),
    ("train_classifier.face.batch_size", 16, "B.3.3: a batch size of 16"),
    ("train_classifier.face.lr", 1e-4, "B.3.3: a learning rate of 1e-4"),
    ("train_classifier.face.warmup_steps", 5000, "B.3.3: warmup for the first 5000 steps"),
    ("train_classifier.nonface.steps", 100000, "B.3.3: 100k training steps"),
    ("train_classifier.nonface.batch_size", 16, "B.3.3: a batch size of 16"),
    ("train_classifier.nonface.lr", 1e-4, "B.3.3: a learning rate of 1e-4"),
    ("train_classifier.nonface.warmup_steps", 5000, "B.3.3: warmup for the first 5000 steps"),
    ("train_classifier.nonface.mask_prob", 0.8, "5.1: with a mask probability of 80%"),
    ("infer.steps", 30, "5.1 / B.4.2: a 30-step DDIM sampler"),
    ("infer.guidance_rate", 0.5, "5.1 / B.4.2: classifier guidance only in the first 15 steps"),
    ("infer.lambda_face", 0.1, WEIGHTS),
    ("infer.lambda_nonface", 1.0, WEIGHTS),
    ("infer.lambda_diff", 0.25, WEIGHTS),
    ("evaluate.size", 256, "B.4.2: the evaluation resolution of the final video is 256x256"),
]  # fmt: skip

# Values the paper does not state: our readings, each with its reason (the README repeats them).
READINGS = {
    "train_univdm.par.sigma_at_512": "Eq. 3's smoothing T(.) has no stated width; 4 px at 512",
    "train_univdm.beta_schedule": "DDPM's schedule is not named; scaled_linear, SVD's family",
    "train_univdm.warmup_steps": "not stated for UniVDM; 500 steps against a cold start of the "
                                 "new audio layers (the classifiers' 5000 is stated)",
    "train_univdm.ema_decay": "not stated; 0.9999 as in most diffusion fine-tuning, the "
                              "negatives and the final weights come from it",
    "train_univdm.micro_batch_size": "hardware, not the recipe: 1 window a card (memory plan)",
    "train_univdm.unet.pretrained": "Video LDM [2] was never released; SVD is its public model",
    "evaluate.bas.sigma_s": "the project's motion-to-audio BAS; Bailando's sigma^2 = 9 frames^2 "
                            "is bas_bailando, the column the report shows",
}  # fmt: skip


def _value(params, key: str):
    value = params
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value.model_dump() if hasattr(value, "model_dump") else value


@pytest.fixture(scope="module")
def paper():
    return load_params(ROOT / "params" / "paper.yaml")


@pytest.mark.parametrize("key, expected, where", FROM_THE_PAPER,
                         ids=[k for k, _, _ in FROM_THE_PAPER])  # fmt: skip
def test_paper_profile_takes_the_papers_value(paper, key, expected, where):
    assert _value(paper, key) == pytest.approx(expected), f"{key}: the paper says {where}"


def test_every_reading_is_a_key_of_the_profile_and_named_in_the_docs(paper):
    readme = (ROOT / "docs/paper-configuration.md").read_text()
    section = readme[readme.index("## Paper configuration") :]
    section = section[: section.index("\n## ", 3)] if "\n## " in section[3:] else section
    for key in READINGS:
        _value(paper, key)  # exists
        assert re.search(rf"`{re.escape(key)}`", section), f"the docs lack the reading {key}"
    overlap = set(READINGS) & {k for k, _, _ in FROM_THE_PAPER}
    assert not overlap
