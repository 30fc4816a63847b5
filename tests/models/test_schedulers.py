"""The noise schedule's options: zero terminal SNR, DDIM timestep spacing, the v target."""

import pytest
import torch

from pipeline.models.schedulers import (
    TERMINAL_ABAR,
    add_noise,
    ddim_scheduler,
    noise_scheduler,
    velocity,
)


def test_default_schedule_is_the_papers_ddpm_and_ddim_starts_at_900():
    scheduler = noise_scheduler()
    # scaled_linear from 1e-4 to 0.02: abar_T = 7e-4, so the last step still holds 2.6 % signal.
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(7.0e-4, rel=0.05)
    assert ddim_scheduler(scheduler, 10).timesteps.tolist() == list(range(900, -1, -100))


def test_zero_terminal_snr_makes_the_last_step_pure_noise_and_keeps_it_invertible():
    plain = noise_scheduler()
    zero = noise_scheduler(zero_terminal_snr=True)
    assert float(zero.alphas_cumprod[-1]) == TERMINAL_ABAR
    # Lin et al.'s rescale keeps the first step's abar and shifts the rest towards noise.
    assert float(zero.alphas_cumprod[0]) == pytest.approx(float(plain.alphas_cumprod[0]))
    assert (zero.alphas_cumprod[1:-1] <= plain.alphas_cumprod[1:-1] + 1e-7).all()
    ddim = ddim_scheduler(zero, 10)
    assert float(ddim.alphas_cumprod[-1]) == TERMINAL_ABAR  # DDIM rebuilds its own and clamps too
    # An epsilon step from t = T stays finite: x_0 = (z - sqrt(1 - abar) eps) / sqrt(abar).
    z = torch.randn(2, 4, 8, 8)
    out = ddim.step(z * 0.5, int(ddim.timesteps[0]), z).prev_sample
    assert torch.isfinite(out).all()


def test_trailing_spacing_starts_at_the_last_step():
    scheduler = noise_scheduler(timestep_spacing="trailing")
    assert ddim_scheduler(scheduler, 10).timesteps.tolist() == list(range(999, 0, -100))
    assert ddim_scheduler(scheduler, 4).timesteps.tolist() == [999, 749, 499, 249]
    with pytest.raises(ValueError, match="timestep_spacing"):
        noise_scheduler(timestep_spacing="sideways")


def test_velocity_is_sqrt_abar_eps_minus_sqrt_one_minus_abar_x0():
    scheduler = noise_scheduler(100)
    latents, noise = torch.full((2, 3, 1, 2, 2), 2.0), torch.full((2, 3, 1, 2, 2), -1.0)
    steps = torch.tensor([10, 99])
    v = velocity(scheduler, latents, noise, steps)
    for i, t in enumerate(steps.tolist()):
        abar = float(scheduler.alphas_cumprod[t])
        expected = abar**0.5 * -1.0 - (1 - abar) ** 0.5 * 2.0
        torch.testing.assert_close(v[i], torch.full_like(v[i], expected))
    # v and z_t give back x_0 and eps: x_0 = sqrt(abar) z_t - sqrt(1 - abar) v.
    noisy = add_noise(scheduler, latents, noise, steps)
    abar = scheduler.alphas_cumprod[steps].view(2, 1, 1, 1, 1)
    torch.testing.assert_close(abar.sqrt() * noisy - (1 - abar).sqrt() * v, latents)
