"""The composed ``text-to-3d`` task: text-to-multiview's four views, their backgrounds removed, reconstructed by
multiview-to-3d from their posed silhouettes (a visual hull with the views' colours baked on).

Result, in order: the textured mesh (``model.glb``, turntable, preview), ``views.png`` (the RGB views, 2x2),
``view_0.png`` .. ``view_3.png`` (RGBA, alpha = the removed background) and ``cameras.json`` (MVDream's cameras).
Both stages run on the pipelines already loaded for their own tasks (no second copy of a model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from predictors.inputs import option, required
from predictors.outputs import TaskResult
from predictors.runtime import LoadEnv, RunContext, log

# Four 256-pixel views: a 128³ hull keeps their detail and a 512 texture holds every view pixel.
RECONSTRUCTION_RESOLUTION = 128
TEXTURE_SIZE = 512
MAX_COVERAGE = 0.95  # a mask this full means the background was not found


@dataclass(frozen=True)
class TextTo3DInputs:
    prompt: str = required('text prompt (", 3d asset" is appended, as MVDream\'s sampling script does).')
    negative_prompt: str = option("", "what to avoid.")
    steps: int = option(50, "denoising steps (DDIM).", ge=1, le=150)
    guidance_scale: float = option(
        7.5, "classifier-free guidance scale (MVDream's own scripts use 7.5-10).", ge=0.0, le=30.0
    )
    elevation: float = option(
        15.0, "camera elevation in degrees (MVDream was trained on 0-30).", ge=-30, le=60
    )
    image_size: int = option(
        256, "view size in pixels (MVDream was trained at 256).", choices=(128, 192, 256, 320, 384, 448, 512)
    )


class TextTo3D:
    """text-to-multiview, then background removal, then multiview-to-3d's posed-view reconstruction."""

    def __init__(self, env: LoadEnv) -> None:
        self.background = env.background

    def generate(self, inputs: TextTo3DInputs, context: RunContext) -> TaskResult:
        views = context.call(
            "text-to-multiview",
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt,
            steps=inputs.steps,
            guidance_scale=inputs.guidance_scale,
            elevation=inputs.elevation,
            image_size=inputs.image_size,
        )
        images = views.extras["views"]
        with context.stage("background"):
            log(f"background: removed with {self.background.method}")
            alphas = np.stack([self.background.alpha(image, f"view {i}") for i, image in enumerate(images)])
            _check_coverage(alphas)
        mesh = context.task("multiview-to-3d").reconstruct_posed(
            torch.from_numpy(images),
            torch.from_numpy(alphas > 127),
            views.extras["cameras"],
            context,
            resolution=RECONSTRUCTION_RESOLUTION,
            texture_size=TEXTURE_SIZE,
        )
        rgba = {
            f"view_{index}.png": np.dstack([views.images[f"view_{index}.png"], alpha])
            for index, alpha in enumerate(alphas)
        }
        return TaskResult(
            mesh=mesh, images={"views.png": views.images["views.png"], **rgba}, documents=views.documents
        )


def _check_coverage(alphas: np.ndarray) -> None:
    """ValueError when a view's foreground is empty or fills the image (the object could not be separated)."""
    for index, alpha in enumerate(alphas):
        coverage = float((alpha > 127).mean())
        if coverage == 0.0 or coverage >= MAX_COVERAGE:
            raise ValueError(
                f"view {index}: could not separate the object from the background (foreground covers "
                f"{coverage:.0%} of the image); try another seed or prompt"
            )


def load(env: LoadEnv) -> TextTo3D:
    """No models of its own: it calls the loaded text-to-multiview and multiview-to-3d tasks."""
    return TextTo3D(env)
