"""The DDIM scheduler against the original LDM DDIM sampler (written out here from its definition)."""

import numpy as np
import pytest
import torch

from predictors.text_to_multiview.unet import build_scheduler, ldm_step_count


def _ldm_alphas_cumprod() -> np.ndarray:
    """LDM's "linear" schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2, in float64."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def _ldm_ddim_timesteps(steps: int) -> np.ndarray:
    """make_ddim_timesteps("uniform"): range(0, 1000, 1000 // steps) + 1, sampled from the last."""
    return (np.arange(0, 1000, 1000 // steps) + 1)[::-1]


def _ldm_ddim_sample(x: np.ndarray, steps: int, eps_fn) -> np.ndarray:
    """LDM's p_sample_ddim loop with eta 0 (alpha_prev of the last step = alphas_cumprod[0])."""
    alphas_cumprod = _ldm_alphas_cumprod()
    timesteps = _ldm_ddim_timesteps(steps)
    for index, t in enumerate(timesteps):
        previous = timesteps[index + 1] if index + 1 < len(timesteps) else 0
        a_t, a_prev = alphas_cumprod[t], alphas_cumprod[previous]
        eps = eps_fn(x, t)
        x0 = (x - np.sqrt(1.0 - a_t) * eps) / np.sqrt(a_t)
        x = np.sqrt(a_prev) * x0 + np.sqrt(1.0 - a_prev) * eps
    return x


@pytest.mark.parametrize("steps", [50, 25])
def test_timesteps_equal_the_original_sampler(steps):
    scheduler = build_scheduler()
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == _ldm_ddim_timesteps(steps).tolist()
    assert ldm_step_count(steps) == steps


def test_thirty_steps_differ_from_the_original_sampler():
    scheduler = build_scheduler()
    scheduler.set_timesteps(30)
    original = _ldm_ddim_timesteps(30)
    assert len(original) == ldm_step_count(30) == 31
    assert len(scheduler.timesteps) == 30 and scheduler.timesteps.tolist() != original.tolist()


def test_schedule_and_trajectory_equal_the_original_sampler():
    scheduler = build_scheduler()
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), _ldm_alphas_cumprod(), rtol=2e-5)
    assert float(scheduler.final_alpha_cumprod) == pytest.approx(_ldm_alphas_cumprod()[0], rel=1e-6)

    def eps_fn(x, t):
        return 0.3 * np.tanh(x) + 0.01 * np.cos(t / 50.0)

    start = np.random.default_rng(0).standard_normal((2, 4, 4, 4))
    expected = _ldm_ddim_sample(start, 50, eps_fn)
    scheduler.set_timesteps(50)
    x = torch.from_numpy(start).float()
    for t in scheduler.timesteps:
        eps = torch.from_numpy(eps_fn(x.double().numpy(), int(t))).float()
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    np.testing.assert_allclose(x.double().numpy(), expected, rtol=1e-5, atol=1e-4)
