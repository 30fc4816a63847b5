"""The compute plan: FLOP counting checked on a hand-computed case, and the plan's arithmetic on
the sample profile (meta tensors: no GPU, no weights)."""

from __future__ import annotations

import torch
import yaml
from torch import nn

from benchmarks.compute_plan import compute_plan, counted_flops, markdown_table
from pipeline.config import parse_params
from tests.tiny_repo import ROOT, merge

# The paper profile with its networks shrunk (SVD's four-level layout kept).
SMALL = {
    "train_univdm": {"size": 64, "frames": 8, "clip": None, "steps": 10,
                     "unet": {"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1,
                              "attention_head_dim": 8, "cross_attention_dim": 32,
                              "addition_time_embed_dim": 8}},
    "negatives": {"lengths": [8, 15], "max_windows": 10, "ddim_steps": 3, "checkpoint_step": 5},
    "train_classifier": {k: {"width": 32, "layers": 1, "heads": 2, "steps": 5}
                         for k in ("face", "nonface")},
}  # fmt: skip


def test_a_linear_layer_costs_two_flops_per_multiply_add_and_backward_twice_that():
    layer = nn.Linear(16, 8, bias=False)
    with torch.device("meta"):
        layer = layer.to("meta")
        x = torch.empty(4, 16, requires_grad=True)
    assert counted_flops(lambda: layer(x)) == 2 * 4 * 16 * 8
    # Backward: the gradients of the input and of the weight, one matmul each.
    assert counted_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 4 * 16 * 8


def test_plan_adds_up_on_a_small_paper_profile():
    raw = yaml.safe_load((ROOT / "params/paper.yaml").read_text())
    params = parse_params(merge(raw, SMALL), "small paper profile")
    plan = compute_plan(params, gpus=2, peak_tflops=100.0, mfu=(0.25, 0.5))
    unet = plan["univdm_window_flops"]
    assert 2.9 < unet["forward_backward"] / unet["forward"] < 3.1  # backward ~ 2 x forward
    train = params.train_univdm
    stage = plan["stages"]["train_univdm"]
    per_window = unet["forward_backward"] + unet["forward"] * train.gradient_checkpointing
    assert stage["flops"] == per_window * train.batch_size * train.steps
    hours = [stage["flops"] / (2 * 100e12 * u) / 3600 for u in (0.25, 0.5)]
    assert stage["hours"] == [round(h, 2) for h in hours]
    # 8 and 15 frames in 8-frame windows sharing a frame: 1 and 2 windows, 1.5 on average.
    negatives = plan["stages"]["negatives"]["flops"]
    assert negatives == int(10 * 1.5 * 3 * unet["forward"])
    segment = {mode: f["flops"] for mode, f in plan["infer_segment"].items()}
    assert segment["none"] == params.infer.steps * unet["forward"]
    assert segment["none"] < segment["sg"] < segment["dg"]
    assert set(plan["stages"]) == {"train_univdm", "negatives", "train_classifier@face",
                                   "train_classifier@nonface"}  # fmt: skip
    assert markdown_table(plan).count("\n") == 5
