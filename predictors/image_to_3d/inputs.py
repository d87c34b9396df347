"""Inputs of ``image-to-3d`` shared by its model versions (each version adds its own sampler inputs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from predictors.inputs import option, required


@dataclass(frozen=True)
class ImageTo3DInputs:
    image: Path = required("input image: PNG, JPEG or WebP; alpha is used as the mask when present.")
    remove_background: bool = option(True, "remove the background when the image has no alpha.")
    face_count: int = option(20_000, "target face count after decimation.", ge=1000, le=500_000)
    texture_size: int = option(1024, "texture width and height in pixels.", ge=256, le=4096)
