"""Example input views for ``multiview-to-3d``, rendered by our own renderer from a procedural mesh.

``python -m tools.example_views [OUT_DIR]`` writes front/back/left/right/top/bottom PNGs (RGBA, alpha =
coverage) in the task's view contract; the demo and the server tests use the committed copies in
``examples/multiview/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image

from predictors.geometry.cameras import SIX_VIEWS, six_view_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.render import render_color

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "multiview"


def toy_house() -> Mesh:
    """A vertex-coloured toy house that fits |coord| <= 0.9 and looks different from every side.

    Cream walls, a red gabled roof (ridge along x), a brown door and two blue windows on the front (+z), a
    grey chimney at the back right (+x, -z) and a green bush against the left wall (-x).
    """
    parts: list[tuple[trimesh.Trimesh, tuple[int, int, int]]] = []

    def box(extents: list[float], centre: list[float], colour: tuple[int, int, int]) -> None:
        part = trimesh.creation.box(extents=extents)
        part.apply_translation(centre)
        parts.append((part, colour))

    box([1.3, 0.8, 1.0], [0.0, -0.4, 0.0], (236, 224, 196))  # walls
    roof = trimesh.Trimesh(
        [
            [-0.75, 0.0, 0.6],
            [0.75, 0.0, 0.6],
            [0.75, 0.0, -0.6],
            [-0.75, 0.0, -0.6],
            [-0.75, 0.6, 0.0],
            [0.75, 0.6, 0.0],
        ],
        [[0, 1, 5], [0, 5, 4], [2, 3, 4], [2, 4, 5], [3, 0, 4], [1, 2, 5], [0, 3, 2], [0, 2, 1]],
    )
    parts.append((roof, (190, 45, 40)))
    box([0.26, 0.5, 0.04], [0.0, -0.55, 0.51], (110, 70, 40))  # door
    for x in (-0.42, 0.42):
        box([0.24, 0.2, 0.04], [x, -0.3, 0.51], (90, 150, 220))  # windows
    box([0.16, 0.5, 0.16], [0.4, 0.45, -0.25], (120, 120, 125))  # chimney
    bush = trimesh.creation.icosphere(subdivisions=2, radius=0.22)
    bush.apply_translation([-0.66, -0.62, 0.1])
    parts.append((bush, (60, 140, 60)))

    vertices, faces, colours, offset = [], [], [], 0
    for part, colour in parts:
        vertices.append(part.vertices)
        faces.append(part.faces + offset)
        colours.append(np.tile(colour, (len(part.vertices), 1)))
        offset += len(part.vertices)
    return Mesh(np.vstack(vertices), np.vstack(faces), vertex_colors=np.vstack(colours).astype(np.uint8))


def render_views(mesh: Mesh, size: int = 256) -> dict[str, np.ndarray]:
    """RGBA uint8 views [size, size, 4] of ``mesh`` in the six-view contract."""
    rgba = render_color(mesh, six_view_cameras(), (size, size), shading="unlit", background=(1.0, 1.0, 1.0))
    images = (rgba.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return dict(zip(SIX_VIEWS, images, strict=True))


def write_example_views(out_dir: Path = EXAMPLE_DIR, size: int = 256) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, image in render_views(toy_house(), size).items():
        paths[name] = out_dir / f"{name}.png"
        Image.fromarray(image, "RGBA").save(paths[name], optimize=True)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE_DIR
    for view, path in write_example_views(target).items():
        print(f"{view}: {path}")
