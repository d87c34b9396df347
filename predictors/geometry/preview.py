"""Still previews: image grids and a 2x2 PNG of a mesh seen from four sides; camera framing for showcases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from predictors.geometry.mesh import Mesh

if TYPE_CHECKING:
    from predictors.geometry.cameras import Cameras

# Field of view of showcase cameras, and the space left around the object's bounding sphere.
SHOWCASE_FOVY_DEG = 40.0
SHOWCASE_MARGIN = 1.05

# The preview's four views (azimuth in degrees, row-major in the grid) and their common elevation.
PREVIEW_AZIMUTHS = (45.0, 135.0, 225.0, 315.0)  # front-right, back-right, back-left, front-left
PREVIEW_ELEVATION = 20.0
# Headlight shading on top of the mesh's colours, so that previews show the shape as well as the texture.
SHOWCASE_SHADING = "lambert"


def write_preview_png(mesh: Mesh, path: Path, *, size: int = 512, device: str = "cpu") -> Path:
    """Write a ``size`` x ``size`` PNG of four views of ``mesh`` in a 2x2 grid and return the path.

    Views (row-major): front-right (azimuth 45°), back-right (135°), back-left (225°), front-left (315°),
    all at elevation 20°, perspective, headlight-shaded, on white. ``size`` must be even and at least 16.
    """
    from PIL import Image

    from predictors.geometry.render import render_color

    if size < 16 or size % 2:
        raise ValueError(f"write_preview_png: size must be an even number of pixels >= 16, got {size}")
    tile = size // 2
    cameras = showcase_cameras(mesh, PREVIEW_AZIMUTHS, PREVIEW_ELEVATION)
    rgba = render_color(
        mesh, cameras, (tile, tile), shading=SHOWCASE_SHADING, background=(1, 1, 1), device=device
    )
    grid = image_grid(list(to_uint8_rgb(rgba)), columns=2)
    path = Path(path)
    Image.fromarray(grid, mode="RGB").save(path, format="PNG")
    return path


def image_grid(images: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Tile equally shaped images [H, W] or [H, W, C] row-major into ``columns`` columns.

    Cells after the last image are filled with white (255 for integer images, 1.0 for float images).
    """
    if not images:
        raise ValueError("image_grid: no images given")
    if columns < 1:
        raise ValueError(f"image_grid: columns must be at least 1, got {columns}")
    first = np.asarray(images[0])
    if any(np.asarray(image).shape != first.shape for image in images):
        raise ValueError(f"image_grid: all images must have the shape of the first, {first.shape}")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    white = np.iinfo(first.dtype).max if np.issubdtype(first.dtype, np.integer) else 1.0
    height, width = first.shape[:2]
    grid = np.full((rows * height, columns * width, *first.shape[2:]), white, dtype=first.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return grid


def showcase_cameras(mesh: Mesh, azimuths_deg: Sequence[float], elevation_deg: float) -> Cameras:
    """Perspective orbit cameras around the origin, far enough that the whole mesh is in view.

    The distance fits the mesh's bounding sphere about the origin (the orbit centre) into the vertical
    field of view ``SHOWCASE_FOVY_DEG`` with a small margin.
    """
    from predictors.geometry.cameras import orbit_cameras

    radius = max(float(np.linalg.norm(mesh.vertices, axis=1).max(initial=0.0)), 1e-3)
    distance = SHOWCASE_MARGIN * radius / math.sin(math.radians(SHOWCASE_FOVY_DEG) / 2.0)
    return orbit_cameras(
        list(azimuths_deg),
        [elevation_deg] * len(azimuths_deg),
        distance=distance,
        orthographic=False,
        fovy_deg=SHOWCASE_FOVY_DEG,
        near=max(distance - radius, 1e-3) * 0.5,
        far=(distance + radius) * 1.5,
    )


def to_uint8_rgb(rgba: object) -> np.ndarray:
    """Rendered images [N, H, W, 4] (torch or numpy floats in [0, 1]) as uint8 RGB [N, H, W, 3]."""
    values = rgba.detach().cpu().numpy() if hasattr(rgba, "detach") else np.asarray(rgba)
    return np.round(np.clip(values[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)
