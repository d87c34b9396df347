"""Inputs of the TRELLIS v1 version of ``image-to-3d``: its two samplers (defaults of the official demo)."""

from __future__ import annotations

from dataclasses import dataclass

from predictors.image_to_3d.inputs import ImageTo3DInputs
from predictors.inputs import option


@dataclass(frozen=True)
class TrellisInputs(ImageTo3DInputs):
    ss_steps: int = option(12, "sparse-structure sampling steps.", ge=1, le=100)
    ss_guidance: float = option(7.5, "sparse-structure guidance strength.", ge=0.0, le=20.0)
    slat_steps: int = option(12, "structured-latent sampling steps.", ge=1, le=100)
    slat_guidance: float = option(3.0, "structured-latent guidance strength.", ge=0.0, le=20.0)
