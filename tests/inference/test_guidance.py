"""SG and DG (Algorithm 1): zero weights are plain sampling, masks confine each step, DG's one
batched UNet call equals three separate ones, the equations on hand-computed cases."""

import dataclasses

import pytest
import torch

from pipeline.data.face_boxes import face_masks
from pipeline.inference import guidance as guidance_module
from pipeline.inference.guidance import Classifiers, GuidanceWeights, differential_combine, guide
from pipeline.inference.sampling import ddim_sample, ddim_scheduler, sample_long_video
from pipeline.models.classifier import SyncClassifier
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig

CONFIG = UniVDMConfig(latent_channels=4, latent_size=8, frames=4, audio_dim=3, audio_context=1,
                      block_out_channels=[32, 32], cross_attention_dim=32,
                      addition_time_embed_dim=8)  # fmt: skip
SCHEDULER = noise_scheduler(100)
ZERO = dict(lambda_nonface=0.0, lambda_face=0.0, lambda_diff=0.0, rate=1.0)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = UniVDM(CONFIG).eval()
    face = SyncClassifier.from_univdm(model, width=32, layers=1, heads=4, max_frames=16).eval()
    nonface = SyncClassifier.from_univdm(model, width=32, layers=1, heads=4, max_frames=16).eval()
    g = torch.Generator().manual_seed(1)
    inputs = {
        "reference": torch.randn(2, 4, 8, 8, generator=g),
        "audio": torch.randn(2, 4, 3, 3, generator=g),
        "initial_noise": torch.randn(2, 4, 4, 8, 8, generator=g),
    }
    mask = face_masks([[0.25, 0.0, 0.75, 0.5], [0.0, 0.5, 0.5, 1.0]], 8)
    classifiers = Classifiers(face, nonface, mask, torch.randn(2, 4, 3, generator=g))
    return model, classifiers, inputs


def _sample(setup, weights=None, steps=4):
    model, classifiers, inputs = setup
    return ddim_sample(model, SCHEDULER, inputs["reference"], inputs["audio"], steps,
                       initial_noise=inputs["initial_noise"], guidance=weights,
                       classifiers=classifiers)  # fmt: skip


def test_zero_weights_give_exactly_the_unguided_result(setup):
    plain = _sample(setup)
    for mode in ("none", "sg", "dg"):
        assert torch.equal(_sample(setup, GuidanceWeights(mode=mode, **ZERO)), plain), mode
    # Non-zero weights do change the result.
    guided = _sample(setup, GuidanceWeights(mode="sg", lambda_nonface=50.0, lambda_face=50.0))
    assert not torch.allclose(guided, plain)


def test_differential_dg_without_classifier_steps_is_plain_sampling(setup):
    """With lambda_nf = lambda_f = 0 the three solver inputs coincide: the differential reading
    adds nothing, the literal Eq. 12 scales the latent by (1 + lambda_diff) each step."""
    plain = _sample(setup)
    weights = GuidanceWeights(mode="dg", **(ZERO | {"lambda_diff": 0.25}))
    torch.testing.assert_close(_sample(setup, weights), plain, atol=1e-5, rtol=0)
    literal = _sample(setup, dataclasses.replace(weights, dg_form="literal"))
    assert not torch.allclose(literal, plain, atol=1e-3)


def test_z_T_is_not_guided_but_the_solver_outputs_are(setup, monkeypatch):
    """Algorithm 1: step 0 turns z_T into f(z_T) unguided; steps 1 .. round(rate * N) are
    guided (the latents the solver produced)."""
    seen = []
    original = guidance_module.guide

    def spy(z, timestep, *args):
        seen.append(int(timestep))
        return original(z, timestep, *args)

    monkeypatch.setattr("pipeline.inference.sampling.guide", spy)
    _sample(setup, GuidanceWeights(mode="sg", rate=0.5), steps=4)
    timesteps = ddim_scheduler(SCHEDULER, 4).timesteps.tolist()
    assert seen == timesteps[1:3]
    assert list(GuidanceWeights(mode="sg", rate=0.5).guided_indices(30)) == list(range(1, 16))
    assert GuidanceWeights(mode="dg", rate=1.0).guided_steps(30) == 29  # all but z_T


def test_guidance_steps_follow_the_rate():
    assert GuidanceWeights(mode="sg", rate=0.5).guided_steps(30) == 15
    assert GuidanceWeights(mode="dg", rate=0.0).guided_steps(30) == 0
    assert GuidanceWeights(mode="none", rate=1.0).guided_steps(30) == 0
    with pytest.raises(ValueError):
        GuidanceWeights(mode="cfg")


def test_equations_8_to_10_by_hand(setup, monkeypatch):
    _, classifiers, _ = setup
    seen = []

    def unit_gradient(classifier, z, timestep, audio, region):
        seen.append((classifier, z.clone()))
        return torch.ones_like(z)

    monkeypatch.setattr(guidance_module, "energy_gradient", unit_gradient)
    z = torch.randn(2, 4, 4, 8, 8)
    weights = GuidanceWeights(mode="sg", lambda_nonface=2.0, lambda_face=0.5)
    out = guide(z, torch.tensor(50), 0.3, weights, classifiers)
    z_star, z_nf, z_f = out.combined, out.nonface, out.face
    m_f = classifiers.face_mask[:, None, None]
    torch.testing.assert_close(z_nf, z - 2.0 * 0.3 * (1 - m_f))
    torch.testing.assert_close(z_f, z - 0.5 * 0.3 * m_f)
    torch.testing.assert_close(z_star, z - 0.6 * (1 - m_f) - 0.15 * m_f)
    # Sequential: the non-face classifier first, at z; the face classifier at z_nf.
    assert seen[0][0] is classifiers.nonface and torch.equal(seen[0][1], z)
    assert seen[1][0] is classifiers.face and torch.equal(seen[1][1], z_nf)


def test_each_guidance_step_changes_only_its_own_area(setup):
    _, classifiers, _ = setup
    z = torch.randn(2, 4, 4, 8, 8)
    weights = GuidanceWeights(mode="sg", lambda_nonface=10.0, lambda_face=10.0)
    out = guide(z, torch.tensor(50), 0.5, weights, classifiers)
    z_nf, z_f = out.nonface, out.face
    inside = classifiers.face_mask[:, None, None].expand_as(z) > 0
    assert (z_nf - z)[inside].abs().max() == 0 and (z_nf - z)[~inside].abs().max() > 0
    assert (z_f - z)[~inside].abs().max() == 0 and (z_f - z)[inside].abs().max() > 0


def test_dg_batched_call_equals_three_separate_calls(setup, monkeypatch):
    model, classifiers, inputs = setup
    weights = GuidanceWeights(mode="dg", lambda_nonface=5.0, lambda_face=5.0, lambda_diff=0.25,
                              rate=1.0)  # fmt: skip
    calls = []
    original = UniVDM.forward

    def counting(self, noisy, *args, **kwargs):
        calls.append(len(noisy))
        return original(self, noisy, *args, **kwargs)

    monkeypatch.setattr(UniVDM, "forward", counting)
    batched = _sample(setup, weights, steps=2)
    # Step 0 (z_T, unguided), then one UNet call holding z*, z_nf and z_f of the batch of 2.
    assert calls == [2, 6]
    monkeypatch.setattr(UniVDM, "forward", original)
    scheduler = ddim_scheduler(SCHEDULER, 2)
    t0, t = scheduler.timesteps
    with torch.no_grad():
        noise = inputs["initial_noise"]
        eps = model(noise, t0, inputs["reference"], inputs["audio"]).epsilon
        z = scheduler.step(eps, t0, noise).prev_sample
    sigma = float((1 - SCHEDULER.alphas_cumprod[int(t)]).sqrt())
    out = guide(z, t, sigma, weights, classifiers)
    z_star, z_nf, z_f = out.combined, out.nonface, out.face
    with torch.no_grad():
        eps = [model(z, t, inputs["reference"], inputs["audio"]).epsilon
               for z in (z_star, z_nf, z_f)]  # fmt: skip
        outs = [scheduler.step(e, t, z).prev_sample
                for e, z in zip(eps, (z_star, z_nf, z_f), strict=True)]  # fmt: skip
    separate = differential_combine(*outs, classifiers.face_mask, weights)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=0)


def test_guided_long_video_keeps_its_seams(setup):
    model, classifiers, inputs = setup
    audio = torch.randn(2, 10, 3, 3)
    wide = dataclasses.replace(classifiers, audio=torch.randn(2, 10, 3))
    noise = torch.randn(2, 3, 4, 4, 8, 8)
    weights = GuidanceWeights(mode="dg", lambda_nonface=5.0, lambda_face=5.0, rate=0.5)
    steps = []
    video = sample_long_video(model, SCHEDULER, inputs["reference"], audio, 9, 2, noise,
                              guidance=weights, classifiers=wide,
                              callback=steps.append)  # fmt: skip
    assert video.shape == (2, 9, 4, 8, 8) and torch.isfinite(video).all()
    assert steps == [0, 1] * 3  # every DDIM step of every segment reported


def test_energy_gradient_freezes_the_weights_only_while_it_runs(setup):
    """The weights stop requiring grad during the gradient (fewer saved activations), the
    gradient is the one autograd gives with trainable weights, and the flags come back."""
    _, classifiers, _ = setup
    nonface = classifiers.nonface
    z = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    region = 1.0 - classifiers.face_mask
    t = torch.tensor(50)
    frozen = []
    hook = nonface.head.register_forward_hook(
        lambda m, i, o: frozen.append(not any(p.requires_grad for p in nonface.parameters()))
    )
    grad = guidance_module.energy_gradient(nonface, z, t, classifiers.audio, region)
    hook.remove()
    assert frozen == [True] and all(p.requires_grad for p in nonface.parameters())
    x = z.clone().requires_grad_(True)
    logits = nonface(x * region[:, None, None], t.expand(2), classifiers.audio)
    SyncClassifier.guidance_energy(logits).sum().backward()
    torch.testing.assert_close(grad, x.grad, atol=1e-7, rtol=1e-5)
    inside = classifiers.face_mask[:, None, None].expand_as(z) > 0
    assert grad[inside].abs().max() == 0 and grad[~inside].abs().max() > 0  # M_nf only


def test_cropping_face_classifier_guides_only_the_face(setup):
    """A face classifier with crop_size reads its box: Eq. 9 still changes only M_f, and with
    zero weights sampling is still exactly unguided."""
    model, classifiers, _ = setup
    face = SyncClassifier.from_univdm(model, width=32, layers=1, heads=4, max_frames=16,
                                      crop_size=4).eval()  # fmt: skip
    cropping = dataclasses.replace(classifiers, face=face)
    z = torch.randn(2, 4, 4, 8, 8)
    weights = GuidanceWeights(mode="sg", lambda_nonface=10.0, lambda_face=10.0)
    out = guide(z, torch.tensor(50), 0.5, weights, cropping)
    z_nf, z_f = out.nonface, out.face
    inside = classifiers.face_mask[:, None, None].expand_as(z) > 0
    assert (z_f - z)[~inside].abs().max() == 0 and ((z_f - z)[inside] != 0).all()
    assert (z_nf - z)[inside].abs().max() == 0
    plain = _sample(setup)
    zero = _sample((model, cropping, setup[2]), GuidanceWeights(mode="dg", **ZERO))
    assert torch.equal(zero, plain)
