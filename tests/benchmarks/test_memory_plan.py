"""The memory plan: saved-activation accounting checked by hand on tiny networks, and the paper
profile's layout fitting an 80 GiB card by the plan (meta tensors: no GPU, no weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.memory_plan import (
    GIB,
    activation_gib,
    fused_attention,
    markdown_table,
    memory_plan,
    profile_fits,
)
from pipeline.config import load_params
from pipeline.models.univdm import UniVDM, UniVDMConfig


class Chain(nn.Module):
    """Two bias-free linear layers with a ReLU between: what each op saves is known."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 8, bias=False)
        self.second = nn.Linear(8, 2, bias=False)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def _meta_chain() -> Chain:
    with torch.device("meta"):
        return Chain()


def test_saved_activations_are_counted_once_without_fp32_weights():
    x = torch.empty(3, 4, device="meta")
    # first saves x (3x4); relu saves its output (3x8); second saves relu's output again (the
    # same storage, counted once). Weights (fp32 parameters) are not activations.
    assert activation_gib(_meta_chain(), {"x": x}) * GIB == pytest.approx(4 * (12 + 24))


def test_a_checkpointed_block_keeps_its_input_plus_one_recomputed_block():
    model = _meta_chain()
    x = torch.empty(3, 4, device="meta")
    # `second` checkpointed: it keeps its input (3x8, 96 B) instead of what it saved (nothing
    # new: relu's output was counted), plus its own activations once (0 B) when recomputed.
    assert activation_gib(model, {"x": x}, [model.second]) * GIB == pytest.approx(4 * (12 + 24)
                                                                                  + 96)  # fmt: skip
    # `first` checkpointed: its saved x (48 B) becomes its input x (48 B) + 48 B recomputed.
    assert activation_gib(model, {"x": x}, [model.first]) * GIB == pytest.approx(144 + 48)


def test_attention_is_counted_as_a_fused_kernel_keeps_it():
    q = torch.empty(1, 2, 16, 8, device="meta", requires_grad=True)  # as activations are

    class Attention(nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q * 1, q * 2)

    saved = activation_gib(Attention(), {"q": q}) * GIB
    # q, k, v and the output (4 x 256 floats) + the log-sum-exp (2 x 16 floats): not 16 x 16.
    assert saved == pytest.approx(4 * (4 * 256 + 32))
    real = torch.nn.functional.scaled_dot_product_attention
    with fused_attention():
        assert torch.nn.functional.scaled_dot_product_attention is not real
    assert torch.nn.functional.scaled_dot_product_attention is real  # restored


def test_the_paper_profile_fits_80_gib_by_the_plan_and_not_without_checkpointing():
    params = load_params("params/paper.yaml")
    plan = memory_plan(params, processes=8, gpu_gib=80.0, micro_batches=(1,))
    assert 1.5e9 < plan["trainable_parameters"] < 1.7e9  # SVD's UNet plus the audio layers
    rows = {r["gradient_checkpointing"]: r for r in plan["rows"]}
    n = plan["trainable_parameters"]
    assert rows[True]["weights"] + rows[True]["gradients"] + rows[True]["optimizer"] == (
        pytest.approx(16 * n / GIB, abs=0.02)
    )  # fp32 master, fp32 gradient, two AdamW moments
    assert not rows[False]["fits"] and rows[True]["fits"]
    assert rows[True]["activations"] < rows[False]["activations"] / 4
    assert profile_fits(plan)
    assert plan["chosen"]["micro_batch"] == 1 and plan["chosen"]["accumulation"] == 1
    assert markdown_table(plan).count("\n") == 3  # header, rule, two rows


def test_univdm_checkpointing_covers_the_temporal_blocks_and_keeps_the_gradients():
    torch.manual_seed(0)
    config = UniVDMConfig(latent_size=8, frames=3, audio_dim=4, audio_context=1,
                          block_out_channels=[32, 32], cross_attention_dim=32,
                          addition_time_embed_dim=8)  # fmt: skip
    model = UniVDM(config).train()
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised outputs would hide the paths
            p.add_(torch.randn_like(p) * 0.02)
    inputs = (torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 4, 8, 8),
              torch.randn(2, 3, 3, 4))  # fmt: skip

    def gradients():
        model.zero_grad()
        model(*inputs).epsilon.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    calls = []
    model.enable_gradient_checkpointing()
    model.enable_gradient_checkpointing()  # twice: wrapped once
    real = torch.utils.checkpoint.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(fn)
        return real(fn, *args, **kwargs)

    torch.utils.checkpoint.checkpoint = counting
    try:
        checkpointed = gradients()
    finally:
        torch.utils.checkpoint.checkpoint = real
    temporal = [b for m in model.unet.modules() for b in getattr(m, "temporal_transformer_blocks",
                                                                  ())]  # fmt: skip
    assert temporal and len([f for f in calls if getattr(f, "__self__", None) in temporal]) == len(
        temporal)  # fmt: skip
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7)
