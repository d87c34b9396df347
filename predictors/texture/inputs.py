"""Inputs of ``texture`` (SyncMVD-style synchronised multi-view diffusion)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predictors.inputs import option, required

CONDITIONS = ("depth", "normal", "canny")
RING_AZIMUTHS = "-180, -135, -90, -45, 0, 45, 90, 135"  # SyncMVD's 8 views around
TOP_VIEWS = ((0.0, 30.0), (180.0, 30.0))  # (azimuth, elevation) of the two views from above
MAX_VIEWS = 16


@dataclass(frozen=True)
class TextureInputs:
    mesh: Path = required(
        "mesh to texture: GLB, glTF (zipped with its files), OBJ (zipped with MTL and textures), PLY or STL."
    )
    prompt: str = required("text prompt describing the surface.")
    negative_prompt: str = option(
        "oversmoothed, blurry, depth of field, out of focus, low quality, bloom, glowing effect.",
        "what to avoid.",
    )
    base_model: str = option(
        "sd15",
        "base model: sd15, sdxl, or the name of a single-file SD1.5/SDXL checkpoint placed in "
        "checkpoints/<name>.safetensors of the weights folder.",
    )
    condition: str = option(
        "depth",
        "ControlNet condition rendered from the mesh (normal and canny need their ControlNet stack installed; "
        "SDXL has depth and canny only).",
        choices=CONDITIONS,
    )
    image_prompt: Path | None = option(
        None, "optional image prompt steering the look (IP-Adapter plus): PNG, JPEG or WebP."
    )
    image_prompt_scale: float = option(0.5, "strength of the image prompt.", ge=0.0, le=2.0)
    steps: int = option(30, "denoising steps.", ge=1, le=150)
    guidance_scale: float = option(15.5, "classifier-free guidance scale.", ge=0.0, le=30.0)
    controlnet_scale: float = option(
        0.7,
        "ControlNet conditioning scale at the first step, ramped to 9/7 of it at the end.",
        ge=0.0,
        le=2.0,
    )
    texture_size: int = option(1024, "texture width and height in pixels.", ge=256, le=4096)
    keep_uv: bool = option(False, "use the mesh's own UVs when it has them (otherwise a new UV atlas).")
    camera_azimuths: str = option(
        RING_AZIMUTHS,
        "comma-separated azimuths in degrees of the views around the object at elevation 0 "
        "(0 = front, the +z side; 90 = right, the +x side).",
    )
    top_views: bool = option(True, "add two views from 30° above (front and back).")

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("texture needs a non-empty prompt describing the surface")
        self.ring_azimuths()  # validates camera_azimuths

    def ring_azimuths(self) -> tuple[float, ...]:
        """The azimuths of ``camera_azimuths`` (blank: SyncMVD's 8)."""
        text = self.camera_azimuths if self.camera_azimuths.strip() else RING_AZIMUTHS
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(
                f"camera_azimuths must be comma-separated numbers in degrees, got {text!r}"
            ) from None
        limit = MAX_VIEWS - len(TOP_VIEWS)
        if not 1 <= len(values) <= limit or not all(np.isfinite(values)):
            raise ValueError(f"camera_azimuths needs 1 to {limit} finite values, got {text!r}")
        return values

    def views(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(azimuths, elevations) of every view: the ring, then the top views when asked."""
        views = [(azimuth, 0.0) for azimuth in self.ring_azimuths()] + (
            list(TOP_VIEWS) if self.top_views else []
        )
        return tuple(a for a, _ in views), tuple(e for _, e in views)
