"""Flow-matching Euler sampler with classifier-free guidance limited to a time interval (TRELLIS v1).

Forward process ``x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps``; the model predicts
``v = (1 - sigma_min) eps - x0`` and is called with ``t * 1000``. Steps follow
``t_i = r s_i / (1 + (r - 1) s_i)`` with ``s = linspace(1, 0, steps + 1)`` and ``r = rescale_t``; each step is
``x <- x - (t_i - t_{i+1}) v``. Where ``cfg_interval[0] <= t <= cfg_interval[1]`` the velocity is
``(1 + s) v(cond) - s v(neg_cond)`` (two separate forwards), elsewhere ``v(cond)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Velocity = Callable[[Any, torch.Tensor, torch.Tensor], Any]
StepCallback = Callable[[int, float, Any], None]

# Sampler names of pipeline.json; the plain and CFG variants are the interval sampler with defaults.
SAMPLER_NAMES = ("FlowEulerSampler", "FlowEulerCfgSampler", "FlowEulerGuidanceIntervalSampler")


@dataclass(frozen=True)
class FlowSamplerSettings:
    """Sampler settings; ``from_config`` reads a pipeline.json sampler entry.

    ``sigma_min`` defines the forward process the model was trained on; the Euler update does not use it.
    """

    steps: int = 25
    cfg_strength: float = 0.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    rescale_t: float = 1.0
    sigma_min: float = 1e-5

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not math.isfinite(self.cfg_strength) or self.cfg_strength < 0:
            raise ValueError(f"cfg_strength must be a finite number >= 0, got {self.cfg_strength!r}")
        low, high = self.cfg_interval
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"cfg_interval must satisfy 0 <= low <= high <= 1, got {self.cfg_interval!r}")
        if not self.rescale_t > 0:
            raise ValueError(f"rescale_t must be > 0, got {self.rescale_t!r}")
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {self.sigma_min!r}")

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> FlowSamplerSettings:
        """Settings from ``{"name", "args": {"sigma_min"}, "params": {...}}``; ``overrides`` win (None is ignored)."""
        name = config.get("name", "FlowEulerGuidanceIntervalSampler")
        if name not in SAMPLER_NAMES:
            raise ValueError(f"unsupported sampler {name!r}; supported: {', '.join(SAMPLER_NAMES)}")
        values = {**config.get("args", {}), **config.get("params", {})}
        values.update({key: value for key, value in overrides.items() if value is not None})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sampler settings {unknown}; allowed: {sorted(known)}")
        if "cfg_interval" in values:
            values["cfg_interval"] = tuple(float(v) for v in values["cfg_interval"])
        if "steps" in values:
            values["steps"] = int(values["steps"])
        return cls(**values)


def timesteps(steps: int, rescale_t: float) -> list[float]:
    """The ``steps + 1`` times from 1 to 0, warped by ``t -> r t / (1 + (r - 1) t)``."""
    uniform = np.linspace(1.0, 0.0, steps + 1)
    return (rescale_t * uniform / (1.0 + (rescale_t - 1.0) * uniform)).tolist()


def guided(t: float, settings: FlowSamplerSettings) -> bool:
    """Whether guidance applies at time ``t`` (the interval is inclusive at both ends)."""
    low, high = settings.cfg_interval
    return settings.cfg_strength != 0.0 and low <= t <= high


@torch.no_grad()
def sample_flow(
    model: Velocity,
    noise: Any,
    cond: torch.Tensor,
    neg_cond: torch.Tensor,
    settings: FlowSamplerSettings,
    on_step: StepCallback | None = None,
) -> Any:
    """Integrate from ``noise`` at t=1 to t=0 and return the sample.

    ``model(x, t_scaled [B], cond)`` returns the velocity; ``x`` may be a dense tensor or a sparse tensor
    supporting ``x - float * v``. ``on_step(index, t, x)`` is called after each step.
    """
    times = timesteps(settings.steps, settings.rescale_t)
    x = noise
    batch = noise.shape[0]  # dense [B, ...]; a SparseTensor's shape is [B, C] too
    for index, (t, t_next) in enumerate(itertools.pairwise(times)):
        t_scaled = torch.full((batch,), 1000.0 * t, dtype=torch.float32, device=cond.device)
        velocity = model(x, t_scaled, cond)
        if guided(t, settings):
            negative = model(x, t_scaled, neg_cond)
            velocity = velocity * (1.0 + settings.cfg_strength) - negative * settings.cfg_strength
        x = x - velocity * (t - t_next)
        if on_step is not None:
            on_step(index, t_next, x)
    return x
