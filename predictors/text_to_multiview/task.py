"""The ``text-to-multiview`` task: prompt -> four consistent views with MVDream (and optionally a 3D model).

Outputs, in order: ``views.png`` (2x2 grid, row-major view 0..3), ``view_0.png`` .. ``view_3.png`` (RGBA with
the background removed when ``output_3d`` is on, else RGB), ``cameras.json`` (each view's MVDream azimuth,
elevation and 16-float camera vector); with ``output_3d`` also ``model.glb``, ``turntable.mp4`` and
``preview.png`` from the posed-view reconstruction of the four views (``predictors.geometry.reconstruct``).
With the default ``azimuth_start`` (90°) the views are front, right, back, left (see ``cameras.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from predictors.diffusion import encode_prompts
from predictors.geometry.export import export_glb
from predictors.geometry.preview import image_grid, write_preview_png
from predictors.geometry.reconstruct import reconstruct
from predictors.geometry.video import render_turntable
from predictors.runtime import RunContext, log
from predictors.text_to_multiview.background import U2NET_FILE, BackgroundRemover
from predictors.text_to_multiview.cameras import (
    DEFAULT_AZIMUTH_START,
    DEFAULT_ELEVATION,
    NUM_VIEWS,
    camera_vectors,
    reconstruction_cameras,
    view_azimuths,
)
from predictors.text_to_multiview.pipeline import (
    MVDreamModels,
    decode,
    denoise,
    initial_latents,
    load_models,
)

MVDREAM_STACK, SD21_STACK, U2NET_STACK = "mvdream-sd21", "sd21-base", "u2net"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5  # Replicate's cog and the gradio demo; scripts/t2i.py uses 10
DEFAULT_IMAGE_SIZE = 256  # MVDream's training resolution
IMAGE_SIZE_MULTIPLE = 64  # the VAE halves 3 times, the UNet 3 more
PROMPT_SUFFIX = ", 3d asset"  # appended as by MVDream's scripts/t2i.py
# Reconstruction from four 256-pixel views: a 512 texture already holds every view pixel.
RECONSTRUCTION_RESOLUTION = 128
TEXTURE_SIZE = 512


@dataclass(frozen=True)
class Settings:
    """The validated inputs of one prediction."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    elevation: float
    azimuth_start: float
    image_size: int
    output_3d: bool

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any]) -> Settings:
        image_size = _default(inputs.get("image_size"), DEFAULT_IMAGE_SIZE)
        if image_size <= 0 or image_size % IMAGE_SIZE_MULTIPLE:
            raise ValueError(
                f"image_size must be a multiple of {IMAGE_SIZE_MULTIPLE} (e.g. 128, 256, 384, 512); got {image_size}"
            )
        prompt = str(inputs.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("text-to-multiview needs a non-empty prompt")
        return cls(
            prompt=prompt if prompt.endswith(PROMPT_SUFFIX) else prompt + PROMPT_SUFFIX,
            negative_prompt=str(inputs.get("negative_prompt") or ""),
            steps=int(_default(inputs.get("steps"), DEFAULT_STEPS)),
            guidance_scale=float(_default(inputs.get("guidance_scale"), DEFAULT_GUIDANCE)),
            elevation=float(_default(inputs.get("elevation"), DEFAULT_ELEVATION)),
            azimuth_start=float(_default(inputs.get("azimuth_start"), DEFAULT_AZIMUTH_START)),
            image_size=int(image_size),
            output_3d=bool(inputs.get("output_3d") or False),
        )


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


class TextToMultiview:
    """MVDream views from a prompt; optional reconstruction of a textured mesh from them."""

    def __init__(self, models: MVDreamModels, background: BackgroundRemover) -> None:
        self.models = models
        self.background = background

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]:
        settings = Settings.from_inputs(inputs)
        log(
            f"prompt: {settings.prompt!r}; {settings.steps} steps, guidance {settings.guidance_scale}, "
            f"elevation {settings.elevation}°, azimuth start {settings.azimuth_start}°, {settings.image_size} px"
        )
        azimuths = view_azimuths(NUM_VIEWS, settings.azimuth_start)
        images = self._generate(settings, azimuths, context)
        alphas = None
        if settings.output_3d:
            with context.stage("background"):
                log(f"background: removed with {self.background.method}")
                alphas = self.background.alphas(images)
        outputs = self._write_views(images, alphas, azimuths, settings.elevation, context)
        if alphas is not None:
            outputs += self._reconstruct(images, alphas > 0.5, azimuths, settings.elevation, context)
        return outputs

    def _generate(self, settings: Settings, azimuths: list[float], context: RunContext) -> np.ndarray:
        models = self.models
        with context.stage("encode"):
            text = encode_prompts(
                models.tokenizer,
                models.text_encoder,
                [settings.negative_prompt, settings.prompt],
                models.device,
            )
        generator = torch.Generator().manual_seed(context.seed)
        latents = initial_latents(models, len(azimuths), settings.image_size, generator)
        with context.stage("denoise"):
            latents = denoise(
                models,
                latents,
                text,
                camera_vectors(azimuths, settings.elevation),
                steps=settings.steps,
                guidance_scale=settings.guidance_scale,
            )
        with context.stage("decode"):
            return decode(models, latents)

    def _write_views(
        self,
        images: np.ndarray,
        alphas: np.ndarray | None,
        azimuths: list[float],
        elevation: float,
        context: RunContext,
    ) -> list[Path]:
        with context.stage("export_views"):
            rgb = np.round(images * 255.0).astype(np.uint8)
            grid = context.output_path("views.png")
            Image.fromarray(image_grid(list(rgb), columns=2), mode="RGB").save(grid)
            paths = [grid]
            for index, view in enumerate(rgb):
                path = context.output_path(f"view_{index}.png")
                if alphas is None:
                    Image.fromarray(view, mode="RGB").save(path)
                else:
                    alpha = np.round(alphas[index] * 255.0).astype(np.uint8)
                    Image.fromarray(np.dstack([view, alpha]), mode="RGBA").save(path)
                paths.append(path)
            cameras = context.output_path("cameras.json")
            vectors = camera_vectors(azimuths, elevation)
            cameras.write_text(
                json.dumps(
                    {
                        "convention": "MVDream: camera-to-world 4x4, Blender z-up world, row-major, unit distance",
                        "views": [
                            {
                                "file": f"view_{index}.png",
                                "azimuth": azimuth,
                                "elevation": elevation,
                                "camera": [round(float(value), 7) for value in vectors[index]],
                            }
                            for index, azimuth in enumerate(azimuths)
                        ],
                    },
                    indent=2,
                )
            )
            return [*paths, cameras]

    def _reconstruct(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        azimuths: list[float],
        elevation: float,
        context: RunContext,
    ) -> list[Path]:
        device = self.models.device
        mesh = reconstruct(
            torch.from_numpy(images),
            torch.from_numpy(masks),
            reconstruction_cameras(azimuths, elevation),
            resolution=RECONSTRUCTION_RESOLUTION,
            texture_size=TEXTURE_SIZE,
            device=device,
            stage=context.stage,
        )
        context.record_metric("mesh.faces", int(mesh.faces.shape[0]))
        with context.stage("export_glb"):
            glb = export_glb(mesh, context.output_path("model.glb"))
        with context.stage("turntable"):
            video = render_turntable(mesh, context.output_path("turntable.mp4"), device=str(device))
        with context.stage("preview"):
            preview = write_preview_png(mesh, context.output_path("preview.png"), device=str(device))
        return [glb, video, preview]


def load(weights_dir: Path, device: torch.device) -> TextToMultiview:
    """Task loader used by the engine: the two MVDream stacks, and U^2-Net when the optional stack is there."""
    models = load_models(weights_dir / MVDREAM_STACK, weights_dir / SD21_STACK, device)
    background = BackgroundRemover(weights_dir / U2NET_STACK / U2NET_FILE)
    log(f"text-to-multiview: background removal by {background.method}")
    return TextToMultiview(models, background)
