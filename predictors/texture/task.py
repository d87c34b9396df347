"""The ``texture`` task: mesh + prompt -> textured GLB by synchronised multi-view diffusion (SyncMVD-style).

Pipeline: load and normalise the mesh (decimated above ``MAX_FACES``), keep its UVs (``keep_uv``) or unwrap;
orthographic cameras (8 azimuths at 0° + 2 at 30° by default); ControlNet conditions rendered at the view
resolution; directional prompts; ``denoise_views`` (SD1.5 + ControlNet, multi-view attention, texture-space
steps); VAE decoding; the RGB views baked into a ``texture_size`` texture (cos^6 weights, unseen texels filled
from the nearest seen one). Outputs, in order: ``model.glb`` (the input geometry in its own coordinates, PBR
base colour, metallic 0), ``turntable.mp4``, ``views.png`` (generated views, 5 per row), ``preview.png``.

View size: SyncMVD's 96 latents (768 px) for SD1.5's 64-latent UNet, i.e. 1.5x the UNet's ``sample_size``;
the latent texture is 512 (SyncMVD), scaled by the same factor for smaller UNets (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from predictors.diffusion import encode_prompts
from predictors.geometry.bake import bake_texture
from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.export import export_glb
from predictors.geometry.mesh import Mesh
from predictors.geometry.mesh_io import load_mesh, normalize_mesh
from predictors.geometry.preview import image_grid, write_preview_png
from predictors.geometry.render import render_passes
from predictors.geometry.uv import atlas_with_fallback, decimate
from predictors.geometry.video import render_turntable
from predictors.runtime import RunContext, log
from predictors.texture.attention import install_multiview_attention, neighbour_views, reference_view
from predictors.texture.conditions import CONDITIONS, condition_images
from predictors.texture.denoise import Schedule, denoise_views
from predictors.texture.models import BASE_STACK, TextureModels, decode_views, load_models
from predictors.texture.prompts import directional_prompts
from predictors.texture.sync import build_projection

MAX_FACES = 200_000  # larger meshes are decimated to this many faces first
UNWRAP_MAX_FACES = 200_000
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 15.5
DEFAULT_CONTROLNET_SCALE = 0.7  # ramps to 0.9 (SyncMVD conditioning_scale / _end)
CONTROLNET_SCALE_END_RATIO = 0.9 / 0.7
DEFAULT_TEXTURE_SIZE = 1024
DEFAULT_NEGATIVE = "oversmoothed, blurry, depth of field, out of focus, low quality, bloom, glowing effect."
DEFAULT_AZIMUTHS = (-180.0, -135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0)
TOP_VIEWS = ((0.0, 30.0), (180.0, 30.0))  # (azimuth, elevation)
MAX_VIEWS = 16
SD15_SAMPLE_SIZE, SD15_VIEW_LATENTS, SD15_TEXTURE_LATENTS = 64, 96, 512
RGB_BAKE_EXPONENT = 6.0  # SyncMVD bakes the final views with exp 6
OBJECT_RADIUS = 0.95  # the normalised mesh fits this sphere, inside the cameras' [-1, 1] frame
GRID_COLUMNS = 5


@dataclass(frozen=True)
class Settings:
    """The validated inputs of one prediction."""

    mesh: Path
    prompt: str
    negative_prompt: str
    condition: str
    steps: int
    guidance_scale: float
    controlnet_scale: float
    texture_size: int
    keep_uv: bool
    azimuths: tuple[float, ...]
    elevations: tuple[float, ...]

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any]) -> Settings:
        prompt = str(inputs.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("texture needs a non-empty prompt describing the surface")
        if inputs.get("mesh") is None:
            raise ValueError("texture needs a mesh (GLB, glTF zip, OBJ zip, PLY or STL)")
        base_model = inputs.get("base_model")
        if base_model not in (None, "", BASE_STACK):
            raise ValueError(
                f"base_model {base_model!r} is not available in this build; allowed: {BASE_STACK} "
                "(SDXL and single-file checkpoints are not built yet)"
            )
        if inputs.get("image_prompt") is not None:
            raise ValueError("image_prompt (IP-Adapter) is not available in this build yet; leave it empty")
        condition = inputs.get("condition") or "depth"
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; allowed: {', '.join(CONDITIONS)}")
        azimuths = parse_azimuths(inputs.get("camera_azimuths"))
        top = _default(inputs.get("top_views"), True)
        views = [(a, 0.0) for a in azimuths] + (list(TOP_VIEWS) if top else [])
        return cls(
            mesh=Path(inputs["mesh"]),
            prompt=prompt,
            negative_prompt=str(_default(inputs.get("negative_prompt"), DEFAULT_NEGATIVE)),
            condition=condition,
            steps=int(_default(inputs.get("steps"), DEFAULT_STEPS)),
            guidance_scale=float(_default(inputs.get("guidance_scale"), DEFAULT_GUIDANCE)),
            controlnet_scale=float(_default(inputs.get("controlnet_scale"), DEFAULT_CONTROLNET_SCALE)),
            texture_size=int(_default(inputs.get("texture_size"), DEFAULT_TEXTURE_SIZE)),
            keep_uv=bool(_default(inputs.get("keep_uv"), False)),
            azimuths=tuple(a for a, _ in views),
            elevations=tuple(e for _, e in views),
        )


def parse_azimuths(text: str | None) -> tuple[float, ...]:
    """The ring azimuths in degrees from a comma list (None or blank: SyncMVD's 8 azimuths)."""
    if text is None or not str(text).strip():
        return DEFAULT_AZIMUTHS
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise ValueError(
            f"camera_azimuths must be comma-separated numbers in degrees, got {text!r}"
        ) from None
    if not 1 <= len(values) <= MAX_VIEWS - len(TOP_VIEWS) or not all(np.isfinite(values)):
        raise ValueError(
            f"camera_azimuths needs 1 to {MAX_VIEWS - len(TOP_VIEWS)} finite values, got {text!r}"
        )
    return values


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


class TextureTask:
    """Textures an uploaded mesh with the SD1.5 + ControlNet stacks."""

    def __init__(self, models: TextureModels) -> None:
        self.models = models
        scale = models.unet.config.sample_size / SD15_SAMPLE_SIZE
        self.view_latents = max(8, round(SD15_VIEW_LATENTS * scale))
        self.texture_latents = max(16, round(SD15_TEXTURE_LATENTS * scale))

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]:
        settings = Settings.from_inputs(inputs)
        controlnet = self.models.controlnet(settings.condition)
        with context.stage("load_mesh"):
            original = load_mesh(settings.mesh, work_dir=context.out_dir / "upload")
            mesh, matrix = prepare_mesh(original, settings.keep_uv, settings.texture_size)
        context.record_metric("mesh.faces", len(mesh.faces))
        cameras = orbit_cameras(list(settings.azimuths), list(settings.elevations))
        view_pixels = self.view_latents * self.models.vae_scale_factor
        log(
            f"texture: {len(cameras)} views of {view_pixels} px ({self.view_latents} latents), latent texture "
            f"{self.texture_latents}, {settings.condition} condition, {settings.steps} steps"
        )
        device = self.models.device
        with context.stage("render_conditions"):
            passes = render_passes(mesh, cameras, (view_pixels, view_pixels), device=device)
            conditions = condition_images(settings.condition, passes, cameras.world_to_cam).to(device)
        with context.stage("projection"):
            projection = build_projection(
                mesh, cameras, self.view_latents, self.texture_latents, device=device
            )
        images = self._generate(settings, controlnet, projection, conditions, context)
        with context.stage("bake"):
            texture, seen = bake_texture(
                mesh,
                torch.from_numpy(images),
                passes.mask.cpu(),
                cameras,
                texture_size=settings.texture_size,
                cos_exponent=RGB_BAKE_EXPONENT,
                device=device,
            )
        log(f"bake: {settings.texture_size}^2 texels, {seen.mean():.0%} seen by some view")
        textured = mesh.copy_with(vertices=undo_normalisation(mesh.vertices, matrix), texture=texture)
        return self._write(textured, images, context)

    def _generate(self, settings, controlnet, projection, conditions, context: RunContext) -> np.ndarray:
        models = self.models
        positives, negatives = directional_prompts(
            settings.prompt, settings.negative_prompt, settings.azimuths, settings.elevations
        )
        with context.stage("encode"):
            text = encode_prompts(models.tokenizer, models.text_encoder, negatives + positives, models.device)
        attention = install_multiview_attention(
            models.unet,
            neighbour_views(settings.azimuths, settings.elevations),
            [reference_view(settings.azimuths, settings.elevations)],
        )
        scheduler = models.new_scheduler()
        scheduler.set_timesteps(settings.steps, device=models.device)
        schedule = Schedule(
            guidance_scale=settings.guidance_scale,
            controlnet_scale=settings.controlnet_scale,
            controlnet_scale_end=settings.controlnet_scale * CONTROLNET_SCALE_END_RATIO,
        )
        generator = torch.Generator().manual_seed(context.seed)
        with context.stage("denoise"), torch.no_grad():
            latents = denoise_views(
                models.unet,
                controlnet,
                scheduler,
                projection,
                attention,
                text,
                conditions,
                models.colour_latents.to(models.device),
                generator,
                schedule,
            )
        with context.stage("decode"):
            return decode_views(models, latents)

    def _write(self, mesh: Mesh, images: np.ndarray, context: RunContext) -> list[Path]:
        device = str(self.models.device)
        with context.stage("export_glb"):
            glb = export_glb(mesh, context.output_path("model.glb"))
        with context.stage("turntable"):
            video = render_turntable(mesh, context.output_path("turntable.mp4"), device=device)
        with context.stage("views"):
            views = context.output_path("views.png")
            rgb = np.round(images * 255.0).astype(np.uint8)
            Image.fromarray(image_grid(list(rgb), columns=min(GRID_COLUMNS, len(rgb))), mode="RGB").save(
                views
            )
        with context.stage("preview"):
            preview = write_preview_png(mesh, context.output_path("preview.png"), device=device)
        return [glb, video, views, preview]


def prepare_mesh(mesh: Mesh, keep_uv: bool, texture_size: int) -> tuple[Mesh, np.ndarray]:
    """Decimate above ``MAX_FACES``, centre and scale into the ``OBJECT_RADIUS`` sphere, and give it UVs.

    Returns the mesh and the 4x4 matrix that was applied to its vertices.
    """
    if len(mesh.faces) > MAX_FACES:
        log(
            f"texture: decimating {len(mesh.faces)} faces to {MAX_FACES} (the limit); the output has the new faces"
        )
        mesh = decimate(mesh, MAX_FACES)
    mesh, matrix = normalize_mesh(mesh, extent=1.0)
    radius = float(np.linalg.norm(mesh.vertices.astype(np.float64), axis=1).max())
    shrink = OBJECT_RADIUS / radius
    mesh = mesh.copy_with(vertices=(mesh.vertices.astype(np.float64) * shrink).astype(np.float32))
    matrix = np.diag([shrink, shrink, shrink, 1.0]) @ matrix
    if keep_uv and mesh.has_uvs:
        log("texture: keeping the mesh's own UVs")
        return mesh.copy_with(texture=None), matrix
    return atlas_with_fallback(mesh, texture_size=texture_size, max_faces=UNWRAP_MAX_FACES), matrix


def undo_normalisation(vertices: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Vertices mapped back through the inverse of the 4x4 normalisation ``matrix``."""
    homogeneous = np.concatenate([vertices.astype(np.float64), np.ones((len(vertices), 1))], axis=1)
    return (homogeneous @ np.linalg.inv(matrix).T)[:, :3].astype(np.float32)


def load(weights_dir: Path, device: torch.device) -> TextureTask:
    """Task loader used by the engine: ``sd15`` and the installed ``controlnet-sd15-*`` stacks."""
    return TextureTask(load_models(weights_dir, device))
