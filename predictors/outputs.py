"""What tasks return, and the one writer that turns it into the prediction's files.

A task returns a :class:`TaskResult` (data: a mesh with its material, named images, JSON documents) and never
writes its own files. :func:`write_outputs` writes, in this order: ``model.glb``, ``turntable.mp4`` (when
``video``) and ``preview.png`` for a result with a mesh, then every image as a PNG and every document as JSON,
under their names. The options of the mesh files are inputs of every task that returns a mesh
(:class:`MeshOutputs`, declared once here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predictors.geometry.mesh import Mesh
from predictors.inputs import option

if TYPE_CHECKING:
    from predictors.runtime import StageTimer


@dataclass(frozen=True)
class MeshOutputs:
    """Inputs of every task whose result is a mesh."""

    video: bool = option(True, "also render a turntable video of the model (turntable.mp4).")


@dataclass
class TaskResult:
    """A task's output as data.

    ``images`` maps file names (``views.png``) to uint8 arrays [H, W, 3] or [H, W, 4] (or PIL images);
    ``documents`` maps file names (``cameras.json``) to JSON-serialisable objects; both keep their order.
    ``extras`` carries data for a task that composes this one (e.g. views and cameras); it is not written.
    """

    mesh: Mesh | None = None
    images: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


def write_outputs(
    result: TaskResult, options: MeshOutputs | None, folder: Path, *, device: str, stage: StageTimer
) -> list[Path]:
    """Write ``result`` into ``folder``; returns the files in output order."""
    from PIL import Image

    paths: list[Path] = []
    if result.mesh is not None:
        paths += _write_mesh(result.mesh, options or MeshOutputs(), folder, device, stage)
    if result.images or result.documents:
        with stage("write_images"):
            for name, image in result.images.items():
                picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
                picture.save(folder / name, format="PNG")
                paths.append(folder / name)
            for name, document in result.documents.items():
                (folder / name).write_text(json.dumps(document, indent=2))
                paths.append(folder / name)
    return paths


def _write_mesh(mesh: Mesh, options: MeshOutputs, folder: Path, device: str, stage: StageTimer) -> list[Path]:
    from predictors.geometry.export import export_glb
    from predictors.geometry.preview import write_preview_png
    from predictors.geometry.video import render_turntable

    with stage("export_glb"):
        paths = [export_glb(mesh, folder / "model.glb")]
    if options.video:
        with stage("turntable"):
            paths.append(render_turntable(mesh, folder / "turntable.mp4", device=device))
    with stage("preview"):
        paths.append(write_preview_png(mesh, folder / "preview.png", device=device))
    return paths
