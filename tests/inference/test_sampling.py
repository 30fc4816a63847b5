"""Long-video sampling: segment plan, seam continuity, equality with one window."""

import pytest
import torch

from pipeline.inference.sampling import ddim_sample, sample_long_video, segment_starts
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig

CONFIG = UniVDMConfig(latent_channels=4, latent_size=4, frames=4, audio_dim=3, audio_context=1,
                      block_out_channels=[32, 32], cross_attention_dim=32,
                      addition_time_embed_dim=8)  # fmt: skip


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UniVDM(CONFIG).eval()


def test_segment_starts_overlap_by_one_frame():
    assert segment_starts(4, 4) == [0]
    assert segment_starts(3, 4) == [0]
    assert segment_starts(5, 4) == [0, 3]
    assert segment_starts(7, 4) == [0, 3]
    assert segment_starts(8, 4) == [0, 3, 6]
    with pytest.raises(ValueError):
        segment_starts(5, 1)


def test_long_video_chains_segments_on_their_shared_frame(model, monkeypatch):
    scheduler = noise_scheduler(100)
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(2, 4, 4, 4, generator=g)
    audio = torch.randn(2, 10, 3, 3, generator=g)
    noise = torch.randn(2, 3, 4, 4, 4, 4, generator=g)
    calls = []
    original = ddim_sample

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((kwargs, out))
        return out

    monkeypatch.setattr("pipeline.inference.sampling.ddim_sample", recording)
    video = sample_long_video(model, scheduler, reference, audio, 9, 2, noise)
    assert video.shape == (2, 9, 4, 4, 4)
    assert len(calls) == 3
    first, second, third = (out for _, out in calls)
    # Segment 0 is unconditioned; segment k+1 is conditioned on segment k's last frame.
    assert calls[0][0]["condition"] is None
    for k in (1, 2):
        kwargs, previous = calls[k][0], calls[k - 1][1]
        assert torch.equal(kwargs["condition"][:, 0], previous[:, -1])
        mask = kwargs["condition_mask"]
        assert mask[:, 0].eq(1).all() and mask[:, 1:].eq(0).all()
    # The output: segment 0, then each later segment without its (conditioned) first frame.
    assert torch.equal(video[:, :4], first)
    assert torch.equal(video[:, 3], first[:, -1])  # the seam frame is the shared one
    assert torch.equal(video[:, 4:7], second[:, 1:])
    assert torch.equal(video[:, 6], second[:, -1])
    assert torch.equal(video[:, 7:9], third[:, 1:3])


def test_one_segment_equals_plain_ddim(model):
    scheduler = noise_scheduler(100)
    g = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 4, 4, 4, generator=g)
    audio = torch.randn(1, 4, 3, 3, generator=g)
    noise = torch.randn(1, 1, 4, 4, 4, 4, generator=g)
    long = sample_long_video(model, scheduler, reference, audio, 4, 3, noise)
    plain = ddim_sample(model, scheduler, reference, audio, 3, initial_noise=noise[:, 0])
    assert torch.equal(long, plain)
    with pytest.raises(ValueError, match="audio windows cover"):
        sample_long_video(model, scheduler, reference, audio[:, :3], 4, 3, noise)
