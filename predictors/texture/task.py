"""The ``texture`` task: mesh + prompt -> textured mesh by synchronised multi-view diffusion (SyncMVD-style).

Pipeline: load and normalise the mesh (decimated above ``MAX_FACES``), keep its UVs (``keep_uv``) or unwrap;
orthographic cameras (8 azimuths at 0° + 2 at 30° by default); ControlNet conditions rendered at the view
resolution; directional prompts; ``denoise_views`` (SD1.5 or SDXL + ControlNet, optional IP-Adapter image
prompt, multi-view attention, texture-space steps); VAE decoding; the RGB views baked into a ``texture_size``
texture (cos^6 weights, unseen texels filled from the nearest seen one). Result: the input geometry in its own
coordinates with the baked texture (PBR base colour, metallic 0), and ``views.png`` (the generated views, 5 per
row).

View sizes per family (``models.FAMILIES``): SD1.5 views of 96 latents (768 px) and a 512 latent texture
(SyncMVD); SDXL 128 latents (1024 px) and 1024 (FlexiSyncMVD's SDXL configs); both scale with the UNet's
``sample_size`` (tiny test stacks).
"""

from __future__ import annotations

import numpy as np
import torch

from predictors.diffusion.attention import (
    MultiViewSelfAttention,
    install_multiview_attention,
    neighbour_views,
    reference_view,
)
from predictors.diffusion.components import decode_latents
from predictors.geometry.bake import bake_texture
from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.mesh_io import load_mesh, normalize_mesh
from predictors.geometry.preview import image_grid
from predictors.geometry.render import render_passes
from predictors.geometry.uv import atlas_with_fallback, decimate
from predictors.outputs import TaskResult
from predictors.runtime import LoadEnv, RunContext, log
from predictors.texture.conditions import condition_images
from predictors.texture.denoise import Conditioning, Schedule, denoise_views
from predictors.texture.inputs import TextureInputs
from predictors.texture.ip_adapter import load_image_prompt
from predictors.texture.models import DiffusionStack, TextureModels, load_models
from predictors.texture.prompts import directional_prompts
from predictors.texture.sync import build_projection

MAX_FACES = 200_000  # larger meshes are decimated to this many faces first
UNWRAP_MAX_FACES = 200_000
CONTROLNET_SCALE_END_RATIO = 0.9 / 0.7  # the ControlNet scale ramps from 0.7 to 0.9 (SyncMVD)
RGB_BAKE_EXPONENT = 6.0  # SyncMVD bakes the final views with exp 6
OBJECT_RADIUS = 0.95  # the normalised mesh fits this sphere, inside the cameras' [-1, 1] frame
GRID_COLUMNS = 5


class TextureTask:
    """Textures an uploaded mesh with an SD1.5 or SDXL stack, a ControlNet and optionally the IP-Adapter."""

    def __init__(self, models: TextureModels) -> None:
        self.models = models

    def generate(self, inputs: TextureInputs, context: RunContext) -> TaskResult:
        image = load_image_prompt(inputs.image_prompt) if inputs.image_prompt is not None else None
        models = self.models
        with context.stage("select_model"):
            stack = models.base(inputs.base_model.strip())
        controlnet = models.controlnet(stack.family, inputs.condition)
        with context.stage("load_mesh"):
            original = load_mesh(inputs.mesh, work_dir=context.work_dir / "upload")
            mesh, matrix = prepare_mesh(original, inputs.keep_uv, inputs.texture_size)
        azimuths, elevations = inputs.views()
        cameras = orbit_cameras(list(azimuths), list(elevations))
        view_pixels = stack.view_pixels
        log(
            f"texture: {stack.name} ({stack.family.name}), {len(cameras)} views of {view_pixels} px "
            f"({stack.view_latents} latents), latent texture {stack.texture_latents}, {inputs.condition} "
            f"condition, {inputs.steps} steps, image prompt {'yes' if image is not None else 'no'}"
        )
        device = models.device
        with context.stage("render_conditions"):
            passes = render_passes(mesh, cameras, (view_pixels, view_pixels), device=device)
            conditions = condition_images(inputs.condition, passes, cameras.world_to_cam).to(device)
        with context.stage("projection"):
            projection = build_projection(
                mesh, cameras, stack.view_latents, stack.texture_latents, device=device
            )
        encoder = [models.image_encoder[0]] if models.image_encoder is not None else []
        with models.placement.on_device([*stack.modules, controlnet, *encoder]):
            images = self._generate(inputs, stack, controlnet, image, projection, conditions, context)
        with context.stage("bake"):
            texture, seen = bake_texture(
                mesh,
                torch.from_numpy(images),
                passes.mask.cpu(),
                cameras,
                texture_size=inputs.texture_size,
                cos_exponent=RGB_BAKE_EXPONENT,
                device=device,
            )
        log(f"bake: {inputs.texture_size}^2 texels, {seen.mean():.0%} seen by some view")
        textured = mesh.copy_with(vertices=undo_normalisation(mesh.vertices, matrix), texture=texture)
        rgb = np.round(images * 255.0).astype(np.uint8)
        grid = image_grid(list(rgb), columns=min(GRID_COLUMNS, len(rgb)))
        return TaskResult(mesh=textured, images={"views.png": grid})

    def _generate(
        self, inputs: TextureInputs, stack: DiffusionStack, controlnet, image, projection, conditions, context
    ) -> np.ndarray:
        models = self.models
        azimuths, elevations = inputs.views()
        positives, negatives = directional_prompts(
            inputs.prompt.strip(), inputs.negative_prompt, azimuths, elevations
        )
        with context.stage("encode"):
            text, added = stack.encode_text(negatives + positives, models.device)
            image_added = models.image_conditioning(stack, image, inputs.image_prompt_scale, len(azimuths))
        conditioning = Conditioning(text, conditions, {**added, **image_added}, added)
        attention = install_multiview_attention(
            stack.unet,
            MultiViewSelfAttention(
                neighbour_views(azimuths, elevations), [reference_view(azimuths, elevations)]
            ),
        )
        scheduler = stack.new_scheduler()
        scheduler.set_timesteps(inputs.steps, device=models.device)
        schedule = Schedule(
            guidance_scale=inputs.guidance_scale,
            controlnet_scale=inputs.controlnet_scale,
            controlnet_scale_end=inputs.controlnet_scale * CONTROLNET_SCALE_END_RATIO,
        )
        with context.stage("denoise"), torch.no_grad():
            latents = denoise_views(
                stack.unet,
                controlnet,
                scheduler,
                projection,
                attention,
                conditioning,
                models.colour_latents(stack),
                context.generator(),
                schedule,
            )
        with context.stage("decode"):
            return decode_latents(stack.vae, latents)


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


def load(env: LoadEnv) -> TextureTask:
    """Every installed texturing stack (an SD1.5 or SDXL base with its depth ControlNet at least)."""
    return TextureTask(load_models(env.weights_dir, env.device, env.placement))
