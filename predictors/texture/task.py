"""The ``texture`` task: mesh + prompt -> textured GLB by synchronised multi-view diffusion (SyncMVD-style).

Pipeline: load and normalise the mesh (decimated above ``MAX_FACES``), keep its UVs (``keep_uv``) or unwrap;
orthographic cameras (8 azimuths at 0° + 2 at 30° by default); ControlNet conditions rendered at the view
resolution; directional prompts; ``denoise_views`` (SD1.5 or SDXL + ControlNet, optional IP-Adapter image
prompt, multi-view attention, texture-space steps); VAE decoding; the RGB views baked into a ``texture_size`` texture (cos^6 weights, unseen texels filled
from the nearest seen one). Outputs, in order: ``model.glb`` (the input geometry in its own coordinates, PBR
base colour, metallic 0), ``turntable.mp4``, ``views.png`` (generated views, 5 per row), ``preview.png``.

View sizes per family (``models.FAMILIES``): SD1.5 views of 96 latents (768 px) and a 512 latent texture
(SyncMVD); SDXL 128 latents (1024 px) and 1024 (FlexiSyncMVD's SDXL configs); both scale with the UNet's
``sample_size`` (tiny test stacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

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
from predictors.texture.denoise import Conditioning, Schedule, denoise_views
from predictors.texture.ip_adapter import load_image_prompt
from predictors.texture.models import DEFAULT_BASE, DiffusionStack, TextureModels, decode_views, load_models
from predictors.texture.prompts import directional_prompts
from predictors.texture.sync import build_projection

MAX_FACES = 200_000  # larger meshes are decimated to this many faces first
UNWRAP_MAX_FACES = 200_000
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 15.5
DEFAULT_CONTROLNET_SCALE = 0.7  # ramps to 0.9 (SyncMVD conditioning_scale / _end)
CONTROLNET_SCALE_END_RATIO = 0.9 / 0.7
DEFAULT_TEXTURE_SIZE = 1024
DEFAULT_IMAGE_PROMPT_SCALE = 0.5  # FlexiSyncMVD's ip_adapter_scale
DEFAULT_NEGATIVE = "oversmoothed, blurry, depth of field, out of focus, low quality, bloom, glowing effect."
DEFAULT_AZIMUTHS = (-180.0, -135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0)
TOP_VIEWS = ((0.0, 30.0), (180.0, 30.0))  # (azimuth, elevation)
MAX_VIEWS = 16
RGB_BAKE_EXPONENT = 6.0  # SyncMVD bakes the final views with exp 6
OBJECT_RADIUS = 0.95  # the normalised mesh fits this sphere, inside the cameras' [-1, 1] frame
GRID_COLUMNS = 5


@dataclass(frozen=True)
class Settings:
    """The validated inputs of one prediction."""

    mesh: Path
    prompt: str
    base_model: str
    image_prompt: Path | None
    image_prompt_scale: float
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
        condition = inputs.get("condition") or "depth"
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; allowed: {', '.join(CONDITIONS)}")
        azimuths = parse_azimuths(inputs.get("camera_azimuths"))
        top = _default(inputs.get("top_views"), True)
        views = [(a, 0.0) for a in azimuths] + (list(TOP_VIEWS) if top else [])
        return cls(
            mesh=Path(inputs["mesh"]),
            prompt=prompt,
            base_model=str(inputs.get("base_model") or "").strip() or DEFAULT_BASE,
            image_prompt=Path(inputs["image_prompt"]) if inputs.get("image_prompt") is not None else None,
            image_prompt_scale=float(_default(inputs.get("image_prompt_scale"), DEFAULT_IMAGE_PROMPT_SCALE)),
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
    """Textures an uploaded mesh with an SD1.5 or SDXL stack, a ControlNet and optionally the IP-Adapter."""

    def __init__(self, models: TextureModels) -> None:
        self.models = models

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]:
        settings = Settings.from_inputs(inputs)
        image = load_image_prompt(settings.image_prompt) if settings.image_prompt is not None else None
        models = self.models
        with context.stage("select_model"):
            stack = models.base(settings.base_model)
        controlnet = models.controlnet(stack.family, settings.condition)
        with context.stage("load_mesh"):
            original = load_mesh(settings.mesh, work_dir=context.out_dir / "upload")
            mesh, matrix = prepare_mesh(original, settings.keep_uv, settings.texture_size)
        context.record_metric("mesh.faces", len(mesh.faces))
        cameras = orbit_cameras(list(settings.azimuths), list(settings.elevations))
        view_pixels = stack.view_pixels
        log(
            f"texture: {stack.name} ({stack.family.name}), {len(cameras)} views of {view_pixels} px "
            f"({stack.view_latents} latents), latent texture {stack.texture_latents}, {settings.condition} "
            f"condition, {settings.steps} steps, image prompt {'yes' if image is not None else 'no'}"
        )
        device = models.device
        with context.stage("render_conditions"):
            passes = render_passes(mesh, cameras, (view_pixels, view_pixels), device=device)
            conditions = condition_images(settings.condition, passes, cameras.world_to_cam).to(device)
        with context.stage("projection"):
            projection = build_projection(
                mesh, cameras, stack.view_latents, stack.texture_latents, device=device
            )
        encoder = [models.image_encoder[0]] if models.image_encoder is not None else []
        with models.on_device([*stack.modules, controlnet, *encoder]):
            images = self._generate(settings, stack, controlnet, image, projection, conditions, context)
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

    def _generate(
        self, settings: Settings, stack: DiffusionStack, controlnet, image, projection, conditions, context
    ) -> np.ndarray:
        models = self.models
        views = len(settings.azimuths)
        positives, negatives = directional_prompts(
            settings.prompt, settings.negative_prompt, settings.azimuths, settings.elevations
        )
        with context.stage("encode"):
            text, added = stack.encode_text(negatives + positives, models.device)
            image_added = models.image_conditioning(stack, image, settings.image_prompt_scale, views)
        conditioning = Conditioning(text, conditions, {**added, **image_added}, added)
        attention = install_multiview_attention(
            stack.unet,
            neighbour_views(settings.azimuths, settings.elevations),
            [reference_view(settings.azimuths, settings.elevations)],
        )
        scheduler = stack.new_scheduler()
        scheduler.set_timesteps(settings.steps, device=models.device)
        schedule = Schedule(
            guidance_scale=settings.guidance_scale,
            controlnet_scale=settings.controlnet_scale,
            controlnet_scale_end=settings.controlnet_scale * CONTROLNET_SCALE_END_RATIO,
        )
        generator = torch.Generator().manual_seed(context.seed)
        with context.stage("denoise"), torch.no_grad():
            latents = denoise_views(
                stack.unet,
                controlnet,
                scheduler,
                projection,
                attention,
                conditioning,
                models.colour_latents(stack),
                generator,
                schedule,
            )
        with context.stage("decode"):
            return decode_views(stack.vae, latents)

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
    """Task loader used by the engine: every installed texturing stack (``sd15`` + its depth ControlNet at least)."""
    return TextureTask(load_models(weights_dir, device))
