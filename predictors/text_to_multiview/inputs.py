"""Inputs of ``text-to-multiview`` (MVDream)."""

from __future__ import annotations

from dataclasses import dataclass

from predictors.inputs import option, required

# Multiples of 64: the VAE halves 3 times and the UNet 3 more. 256 is MVDream's training size.
IMAGE_SIZES = (128, 192, 256, 320, 384, 448, 512)


@dataclass(frozen=True)
class TextToMultiviewInputs:
    prompt: str = required('text prompt (", 3d asset" is appended, as MVDream\'s sampling script does).')
    negative_prompt: str = option("", "what to avoid.")
    steps: int = option(50, "denoising steps (DDIM).", ge=1, le=150)
    guidance_scale: float = option(
        7.5, "classifier-free guidance scale (MVDream's own scripts use 7.5-10).", ge=0.0, le=30.0
    )
    elevation: float = option(
        15.0, "camera elevation in degrees (MVDream was trained on 0-30).", ge=-30, le=60
    )
    azimuth_start: float = option(
        0.0,
        "azimuth of the first view in degrees (0 = the object's front, 90 = its right side); the four views are "
        "90° apart, so the default gives front, right, back, left.",
        ge=0,
        le=360,
    )
    image_size: int = option(256, "view size in pixels (MVDream was trained at 256).", choices=IMAGE_SIZES)
