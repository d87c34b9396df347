"""The ``multiview-to-3d`` task: six orthographic views -> textured GLB, turntable MP4 and preview PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from predictors.geometry.cameras import SIX_VIEWS
from predictors.geometry.export import export_glb
from predictors.geometry.preview import write_preview_png
from predictors.geometry.reconstruct import reconstruct
from predictors.geometry.video import render_turntable
from predictors.multiview_to_3d.views import load_views
from predictors.runtime import RunContext

DEFAULT_RESOLUTION = 128
DEFAULT_TEXTURE_SIZE = 1024


class MultiviewTo3D:
    """Visual-hull reconstruction with colour baked from the views; needs no weights."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]:
        resolution = inputs.get("resolution") or DEFAULT_RESOLUTION
        texture_size = inputs.get("texture_size") or DEFAULT_TEXTURE_SIZE
        with context.stage("load_views"):
            views = load_views({name: inputs.get(name) for name in SIX_VIEWS})
        mesh = reconstruct(
            views.images,
            views.masks,
            views.cameras,
            resolution=resolution,
            texture_size=texture_size,
            device=self.device,
            stage=context.stage,
        )
        context.record_metric("mesh.faces", int(mesh.faces.shape[0]))
        with context.stage("export_glb"):
            glb = export_glb(mesh, context.output_path("model.glb"))
        with context.stage("turntable"):
            video = render_turntable(mesh, context.output_path("turntable.mp4"), device=str(self.device))
        with context.stage("preview"):
            preview = write_preview_png(mesh, context.output_path("preview.png"), device=str(self.device))
        return [glb, video, preview]


def load(weights_dir: Path, device: torch.device) -> MultiviewTo3D:
    """Task loader used by the engine (this task has no weights)."""
    del weights_dir
    return MultiviewTo3D(device)
