"""TRELLIS v1 (image-large) as a version of ``image-to-3d``: one image -> textured mesh.

Result: the decimated, unwrapped mesh with a texture baked from the decoder's vertex colours (``model.glb``,
turntable, preview via the writer) and ``input_processed.png``, the 518² conditioning image.
"""

from __future__ import annotations

from predictors.geometry.uv import decimate, unwrap_uv
from predictors.image_to_3d.trellis.inputs import TrellisInputs
from predictors.image_to_3d.trellis.pipeline import GenerationSettings, TrellisImageTo3D
from predictors.image_to_3d.trellis.postprocess import bake_vertex_colours, to_world_mesh
from predictors.image_to_3d.trellis.preprocess import prepare_image
from predictors.outputs import TaskResult
from predictors.runtime import LoadEnv, RunContext, compute_dtype, log, peak_memory_mb

TRELLIS_STACK = "trellis-image-large"
DINOV2_STACK = "dinov2-with-registers-large"


class TrellisImageTo3DTask:
    """Runs the loaded TRELLIS stack and post-processes its mesh."""

    def __init__(self, pipeline: TrellisImageTo3D, env: LoadEnv) -> None:
        self.pipeline = pipeline
        self.env = env

    def generate(self, inputs: TrellisInputs, context: RunContext) -> TaskResult:
        with context.stage("preprocess"):
            prepared = prepare_image(
                inputs.image, self.env.background, remove_background=inputs.remove_background
            )
            log(f"image-to-3d: mask from {prepared.mask_source}")
        settings = GenerationSettings(
            seed=context.seed,
            ss_steps=inputs.ss_steps,
            ss_guidance=inputs.ss_guidance,
            slat_steps=inputs.slat_steps,
            slat_guidance=inputs.slat_guidance,
        )
        with self.env.placement.on_device(self.pipeline.modules):
            fine = self.pipeline.generate(prepared.image, settings, context.stage)
        _log_memory(context, "generation")
        with context.stage("texture"):
            coloured = to_world_mesh(fine.vertices, fine.faces, fine.colors)
            del fine
            simplified = unwrap_uv(decimate(coloured, inputs.face_count), max_faces=inputs.face_count)
            texture = bake_vertex_colours(simplified, coloured, inputs.texture_size)
            mesh = simplified.copy_with(texture=texture, vertex_colors=None)
        return TaskResult(mesh=mesh, images={"input_processed.png": prepared.image})


def _log_memory(context: RunContext, when: str) -> None:
    usage = ", ".join(f"{key} {value:.0f}" for key, value in peak_memory_mb(context.device).items())
    log(f"image-to-3d: peak memory after {when}: {usage}")


def load(env: LoadEnv) -> TrellisImageTo3DTask:
    """The TRELLIS image-large and DINOv2 stacks, on the CPU until placement settles."""
    pipeline = TrellisImageTo3D(
        env.weights_dir / TRELLIS_STACK, env.weights_dir / DINOV2_STACK, env.device, compute_dtype(env.device)
    )
    env.placement.register("image-to-3d (trellis)", pipeline.modules)
    return TrellisImageTo3DTask(pipeline, env)
