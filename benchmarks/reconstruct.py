"""Six-view visual-hull reconstruction: quality and speed on five procedural shapes.

Protocol (reference/reconstruction.md §5.1): each ground-truth mesh is normalised to max |coord| = 0.9,
rendered from the six contract views at 256 px with our renderer (unlit vertex colours), and reconstructed
on the CPU. Metrics: volume IoU from 100k uniform points in [-1, 1]^3 (trimesh ``contains``), Chamfer-L1
= ½(mean d(pred→GT) + mean d(GT→pred)) and F-score at τ = 0.02 (cube side 2), both on 100k surface
samples per mesh.

Figures per shape, from one ``reconstruct`` call as the task runs it (default sizes: 128^3 grid, 20k faces,
1024^2 texture), timed stage by stage:
* ``<shape>_seconds``: the whole call (carve + surface + UV unwrap + bake);
* ``<shape>_geometry_seconds``: carve + surface extraction (smoothing, decimation), what the metrics measure;
* ``<shape>_unwrap_seconds`` and ``<shape>_bake_seconds``;
* ``<shape>_iou``, ``<shape>_chamfer_l1``, ``<shape>_fscore_0.02`` of the reconstructed mesh;
* ``<shape>_peer_carve_seconds`` vs ``<shape>_carve_seconds``: a naive numpy carve of the same grid (per
  view: project every voxel centre, look up its pixel by boolean indexing, AND) against ours.

``ratio`` = mean ours / mean peer carve seconds (lower is better); ``peer_mean_iou`` is the IoU of the
peer's binary grid meshed by plain marching cubes, for comparison with ``mean_iou``.
"""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictors.geometry.cameras import Cameras, six_view_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.reconstruct import reconstruct
from predictors.geometry.render import render_color

VIEW_SIZE = 256
RESOLUTION = 128
SAMPLES = 100_000
TAU = 0.02


# ------------------------------------------------------------------------------------------- shapes


def normalised(shape: trimesh.Trimesh) -> trimesh.Trimesh:
    """Bounding box centred at the origin, max |coord| = 0.9."""
    shape = shape.copy()
    shape.apply_translation(-shape.bounds.mean(axis=0))
    shape.apply_scale(0.9 / np.abs(shape.vertices).max())
    return shape


def l_prism() -> trimesh.Trimesh:
    """An L-shaped prism (union of two boxes), built exactly."""
    outline = np.array([[-1, -1], [1, -1], [1, -0.4], [-0.4, -0.4], [-0.4, 1], [-1, 1]], dtype=float)
    caps = [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]  # counter-clockwise seen from +z
    count = len(outline)
    vertices = np.concatenate([np.c_[outline, np.full(count, -0.5)], np.c_[outline, np.full(count, 0.5)]])
    faces = [[c + count for c in tri] for tri in caps] + [tri[::-1] for tri in caps]
    for i in range(count):
        j = (i + 1) % count
        faces += [[i, j, j + count], [i, j + count, i + count]]
    return trimesh.Trimesh(vertices, np.array(faces), process=False)


def mug(resolution: int = 160) -> trimesh.Trimesh:
    """A mug (open cylinder shell with a bottom, torus handle) from its signed distance field."""
    axis = np.linspace(-1.1, 1.1, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    radial = np.hypot(x, z)
    shell = np.maximum(np.abs(radial - 0.55) - 0.07, np.abs(y) - 0.8)
    bottom = np.maximum(radial - 0.62, np.abs(y + 0.72) - 0.08)
    handle = np.hypot(np.hypot(x - 0.62, y) - 0.4, z) - 0.08
    sdf = np.minimum(np.minimum(shell, bottom), handle)
    step = axis[1] - axis[0]
    vertices, faces, _, _ = measure.marching_cubes(sdf, level=0.0, spacing=(step, step, step))
    shape = trimesh.Trimesh(vertices - 1.1, faces, process=True)
    if shape.volume < 0:
        shape.invert()
    return shape


SHAPES = {
    "box": lambda: trimesh.creation.box(extents=(1.5, 1.0, 0.6)),
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=5),
    "torus": lambda: trimesh.creation.torus(0.6, 0.3, major_sections=128, minor_sections=64),
    "lshape": l_prism,
    "mug": mug,
}


# ------------------------------------------------------------------------------------------- metrics


def volume_iou(predicted: trimesh.Trimesh, truth: trimesh.Trimesh) -> float:
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (SAMPLES, 3))
    a, b = predicted.contains(points), truth.contains(points)
    return float((a & b).sum() / max((a | b).sum(), 1))


def chamfer_and_fscore(predicted: trimesh.Trimesh, truth: trimesh.Trimesh) -> tuple[float, float]:
    pred_points, _ = trimesh.sample.sample_surface(predicted, SAMPLES, seed=1)
    true_points, _ = trimesh.sample.sample_surface(truth, SAMPLES, seed=2)
    to_truth, _ = cKDTree(true_points).query(pred_points)
    to_pred, _ = cKDTree(pred_points).query(true_points)
    precision, recall = (to_truth < TAU).mean(), (to_pred < TAU).mean()
    fscore = 2 * precision * recall / max(precision + recall, 1e-12)
    return 0.5 * (to_truth.mean() + to_pred.mean()), float(fscore)


# ------------------------------------------------------------------------------------------- peer


def numpy_carve(masks: np.ndarray, cameras: Cameras, resolution: int) -> np.ndarray:
    """Naive boolean visual hull: every voxel centre projected into every view, nearest pixel lookup."""
    axis = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    occupied = np.ones(len(points), dtype=bool)
    mvp = cameras.mvp.numpy()
    _, height, width = masks.shape
    for view, mask in enumerate(masks):
        clip = points @ mvp[view, :3, :3].T + mvp[view, :3, 3]
        w = points @ mvp[view, 3, :3] + mvp[view, 3, 3]
        column = np.floor((clip[:, 0] / w + 1.0) * 0.5 * width).astype(np.int64)
        row = np.floor((1.0 - clip[:, 1] / w) * 0.5 * height).astype(np.int64)
        inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
        hit = np.zeros(len(points), dtype=bool)
        hit[inside] = mask[row[inside], column[inside]]
        occupied &= hit
    return occupied.reshape(resolution, resolution, resolution)


def marching_cubes_mesh(grid: np.ndarray) -> trimesh.Trimesh:
    step = 2.0 / (grid.shape[0] - 1)
    vertices, faces, _, _ = measure.marching_cubes(
        np.pad(grid.astype(np.float32), 1), 0.5, spacing=(step,) * 3
    )
    return trimesh.Trimesh(vertices - (1.0 + step), faces, process=False)


# ------------------------------------------------------------------------------------------- run


def as_trimesh(mesh: Mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


class StageTimes(dict):
    """A ``reconstruct`` stage timer that records each stage's seconds and prints nothing."""

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self[name] = time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cameras = six_view_cameras()
    totals: dict[str, list[float]] = {
        key: [] for key in ("seconds", "geometry", "carve", "peer", "iou", "peer_iou")
    }
    for name, make in SHAPES.items():
        truth = normalised(make())
        colours = ((truth.vertices / 0.9 * 0.5 + 0.5) * 255).astype(np.uint8)
        rgba = render_color(
            Mesh(truth.vertices, truth.faces, vertex_colors=colours), cameras, (VIEW_SIZE,) * 2
        )
        images, masks = rgba[..., :3].contiguous(), rgba[..., 3] > 0.5

        stages = StageTimes()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            result = reconstruct(images, masks, cameras, resolution=RESOLUTION, stage=stages)
        seconds = time.perf_counter() - start

        start = time.perf_counter()
        peer_grid = numpy_carve(masks.numpy(), cameras, RESOLUTION)
        peer_seconds = time.perf_counter() - start

        predicted = as_trimesh(result)
        iou = volume_iou(predicted, truth)
        chamfer, fscore = chamfer_and_fscore(predicted, truth)
        peer_iou = volume_iou(marching_cubes_mesh(peer_grid), truth)
        geometry = stages["carve"] + stages["surface"]
        for key, value in [
            ("seconds", seconds),
            ("geometry_seconds", geometry),
            ("unwrap_seconds", stages["unwrap"]),
            ("bake_seconds", stages["bake"]),
            ("iou", iou),
            ("chamfer_l1", chamfer),
            ("fscore_0.02", fscore),
            ("carve_seconds", stages["carve"]),
            ("peer_carve_seconds", peer_seconds),
        ]:
            print(f"{name}_{key}: {value:.4f}", flush=True)
        for key, value in [
            ("seconds", seconds),
            ("geometry", geometry),
            ("carve", stages["carve"]),
            ("peer", peer_seconds),
            ("iou", iou),
            ("peer_iou", peer_iou),
        ]:
            totals[key].append(value)
    print(f"mean_seconds: {np.mean(totals['seconds']):.4f}")
    print(f"mean_geometry_seconds: {np.mean(totals['geometry']):.4f}")
    print(f"mean_iou: {np.mean(totals['iou']):.4f}")
    print(f"peer_mean_iou: {np.mean(totals['peer_iou']):.4f}")
    print(f"ratio: {np.mean(totals['carve']) / np.mean(totals['peer']):.4f}")


if __name__ == "__main__":
    main()
