"""The ``multiview-to-3d`` task: six orthographic views -> textured mesh (visual hull, colours baked from the
views). Needs no weights. ``reconstruct_posed`` serves composed tasks with views from any posed cameras."""

from __future__ import annotations

import torch

from predictors.geometry.cameras import SIX_VIEWS, Cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.reconstruct import reconstruct
from predictors.multiview_to_3d.inputs import MultiviewTo3DInputs
from predictors.multiview_to_3d.views import load_views
from predictors.outputs import TaskResult
from predictors.runtime import LoadEnv, RunContext


class MultiviewTo3D:
    """Visual-hull reconstruction with colour baked from the views."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def generate(self, inputs: MultiviewTo3DInputs, context: RunContext) -> TaskResult:
        with context.stage("load_views"):
            views = load_views({name: getattr(inputs, name) for name in SIX_VIEWS})
        mesh = self.reconstruct_posed(
            views.images,
            views.masks,
            views.cameras,
            context,
            resolution=inputs.resolution,
            texture_size=inputs.texture_size,
        )
        return TaskResult(mesh=mesh)

    def reconstruct_posed(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        cameras: Cameras,
        context: RunContext,
        *,
        resolution: int,
        texture_size: int,
    ) -> Mesh:
        """Textured mesh from views [N, H, W, 3] in [0, 1], masks [N, H, W] bool and their cameras."""
        return reconstruct(
            images,
            masks,
            cameras,
            resolution=resolution,
            texture_size=texture_size,
            device=self.device,
            stage=context.stage,
        )


def load(env: LoadEnv) -> MultiviewTo3D:
    """This task has no weights."""
    return MultiviewTo3D(env.device)
