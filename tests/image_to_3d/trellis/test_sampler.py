"""Flow-matching Euler sampler: schedule, guidance interval and CFG formulas, and analytic velocity fields."""

from __future__ import annotations

import math

import pytest
import torch

from extensions.sparse import SparseTensor
from predictors.image_to_3d.trellis.sampler import FlowSamplerSettings, guided, sample_flow, timesteps

SIGMA_MIN = 1e-5


def test_timesteps_follow_the_rescale_formula() -> None:
    for steps, r in [(4, 1.0), (25, 3.0), (12, 5.0)]:
        times = timesteps(steps, r)
        assert len(times) == steps + 1 and times[0] == pytest.approx(1.0) and times[-1] == 0.0
        for i, t in enumerate(times):
            s = 1 - i / steps
            assert t == pytest.approx(r * s / (1 + (r - 1) * s), abs=1e-12)
    assert timesteps(4, 1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_guidance_interval_is_inclusive_and_counts_forwards() -> None:
    calls: list[tuple[float, str]] = []

    def model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        calls.append((t.item() / 1000.0, "neg" if cond.sum() == 0 else "cond"))
        return torch.zeros_like(x)

    settings = FlowSamplerSettings(steps=4, cfg_strength=3.0, cfg_interval=(0.5, 0.75), rescale_t=1.0)
    cond = torch.ones(1, 2, 3)
    sample_flow(model, torch.zeros(1, 2), cond, torch.zeros_like(cond), settings)
    # times evaluated: 1.0, 0.75, 0.5, 0.25 -> guidance at 0.75 and 0.5 (both ends included)
    assert [kind for _, kind in calls] == ["cond", "cond", "neg", "cond", "neg", "cond"]
    assert [t for t, kind in calls if kind == "neg"] == pytest.approx([0.75, 0.5])
    # 25 steps, rescale 3, interval [0.5, 1]: the first 75 % of the steps are guided
    stock = FlowSamplerSettings(steps=25, cfg_strength=5.0, cfg_interval=(0.5, 1.0), rescale_t=3.0)
    guided_steps = sum(guided(t, stock) for t in timesteps(25, 3.0)[:-1])
    assert guided_steps == sum(1 for i in range(25) if 3 * (1 - i / 25) / (1 + 2 * (1 - i / 25)) >= 0.5)
    assert guided_steps == 19


def test_cfg_combines_conditional_and_negative_velocities() -> None:
    def model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 2.0) if cond.sum() != 0 else torch.full_like(x, -1.0)

    cond = torch.ones(1, 1, 1)
    settings = FlowSamplerSettings(steps=3, cfg_strength=4.0, cfg_interval=(0.0, 1.0))
    out = sample_flow(model, torch.zeros(1, 5), cond, torch.zeros_like(cond), settings)
    # constant velocity (1 + 4) * 2 - 4 * (-1) = 14, integrated over t from 1 to 0
    assert torch.allclose(out, torch.full((1, 5), -14.0))


def point_mass_velocity(mu: torch.Tensor):
    """Exact velocity for data = {mu}: v = (1 - s) eps - mu with eps recovered from x_t."""

    def model(x: torch.Tensor, t_scaled: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = t_scaled[0].item() / 1000.0
        eps = (x - (1 - t) * mu) / (SIGMA_MIN + (1 - SIGMA_MIN) * t)
        return (1 - SIGMA_MIN) * eps - mu

    return model


def test_euler_is_exact_for_a_point_mass() -> None:
    # The path x_t = (1 - t) mu + (s + (1 - s) t) eps is straight, so Euler lands on mu + s eps for any schedule.
    mu, noise = (
        torch.tensor([[0.3, -2.0, 5.0]]),
        torch.randn(1, 3, generator=torch.Generator().manual_seed(0)),
    )
    cond = torch.ones(1, 1, 1)
    for steps, r in [(1, 1.0), (7, 3.0), (25, 5.0)]:
        settings = FlowSamplerSettings(steps=steps, rescale_t=r, sigma_min=SIGMA_MIN)
        out = sample_flow(point_mass_velocity(mu), noise, cond, torch.zeros_like(cond), settings)
        assert torch.allclose(out, mu + SIGMA_MIN * noise, atol=1e-5)


def test_gaussian_data_converges_to_the_exact_transport() -> None:
    # Data N(m, s^2): x_t = a m + sqrt(a^2 s^2 + b^2) z with a = 1 - t, b = sigma + (1 - sigma) t and z = x_1.
    m, s = 1.5, 0.4

    def scale(t: float) -> float:
        return math.sqrt((1 - t) ** 2 * s**2 + (SIGMA_MIN + (1 - SIGMA_MIN) * t) ** 2)

    def model(x: torch.Tensor, t_scaled: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = t_scaled[0].item() / 1000.0
        b = SIGMA_MIN + (1 - SIGMA_MIN) * t
        d_scale = (-(1 - t) * s**2 + b * (1 - SIGMA_MIN)) / scale(t)
        z = (x - (1 - t) * m) / scale(t)
        return -m + d_scale * z

    noise = torch.randn(1, 1000, generator=torch.Generator().manual_seed(1))
    exact = m + scale(0.0) * noise
    cond = torch.ones(1, 1, 1)
    errors = []
    for steps in (10, 40, 160):
        settings = FlowSamplerSettings(steps=steps, rescale_t=3.0, sigma_min=SIGMA_MIN)
        errors.append(
            (sample_flow(model, noise, cond, torch.zeros_like(cond), settings) - exact).abs().max().item()
        )
    # Euler is first order: 4x the steps gives about 1/4 of the error.
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5
    assert errors[2] < 0.05


def test_sparse_noise_is_sampled_per_voxel() -> None:
    coords = torch.tensor([[0, 1, 2, 3], [0, 4, 4, 4], [1, 0, 0, 1]], dtype=torch.int32)
    noise = SparseTensor(torch.randn(3, 2), coords)
    seen: list[int] = []

    def model(x: SparseTensor, t: torch.Tensor, cond: torch.Tensor) -> SparseTensor:
        seen.append(t.shape[0])
        return x.replace(torch.ones_like(x.feats))

    cond = torch.ones(2, 1, 1)
    out = sample_flow(model, noise, cond, torch.zeros_like(cond), FlowSamplerSettings(steps=2))
    assert seen == [2, 2] and torch.equal(out.coords, coords)
    assert torch.allclose(out.feats, noise.feats - 1.0)


def test_settings_from_pipeline_config_and_overrides() -> None:
    config = {
        "name": "FlowEulerGuidanceIntervalSampler",
        "args": {"sigma_min": 1e-5},
        "params": {"steps": 25, "cfg_strength": 5.0, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0},
    }
    settings = FlowSamplerSettings.from_config(config, steps=12, cfg_strength=None)
    assert settings == FlowSamplerSettings(
        steps=12, cfg_strength=5.0, cfg_interval=(0.5, 1.0), rescale_t=3.0, sigma_min=1e-5
    )
    with pytest.raises(ValueError, match="unsupported sampler"):
        FlowSamplerSettings.from_config({"name": "DDIM"})
    with pytest.raises(ValueError, match="unknown sampler settings"):
        FlowSamplerSettings.from_config(config, guidance_rescale=0.7)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FlowSamplerSettings.from_config(config, steps=0)
    with pytest.raises(ValueError, match="cfg_interval"):
        FlowSamplerSettings(cfg_interval=(0.9, 0.1))
    with pytest.raises(ValueError, match="rescale_t"):
        FlowSamplerSettings(rescale_t=0.0)
