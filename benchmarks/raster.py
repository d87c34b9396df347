"""Benchmark: pure-PyTorch rasterizer vs trimesh + embreex ray casting on a ~100k-face mesh at 512 x 512.

Prints ``name: value`` lines; ``ratio`` is torch ms per frame / embree ms per frame (lower is better).
The ratio uses 2 torch threads (``BENCH_THREADS`` changes it), since embreex's ray queries also use both
cores of the reference machine; the 1-thread time and ratio are printed as well.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import sys
import time
from pathlib import Path

import fast_simplification
import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extensions.raster import torch_backend
from predictors.geometry.cameras import orbit_cameras, pixel_rays

RESOLUTION = 512
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
TARGET_FACES = 100_000
REPEATS = 10


def bumpy_mesh(target_faces: int) -> trimesh.Trimesh:
    """A watertight bumpy blob: marching cubes of a wavy sphere SDF, decimated to about ``target_faces``."""
    axis = np.linspace(-1.0, 1.0, 200, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    radius = 0.7 * (1.0 + 0.12 * np.sin(7 * x) * np.sin(6 * y) * np.sin(5 * z))
    sdf = np.sqrt(x**2 + y**2 + z**2) - radius
    vertices, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(axis[1] - axis[0],) * 3)
    vertices = vertices + axis[0]
    reduction = 1.0 - target_faces / len(faces)
    vertices, faces = fast_simplification.simplify(
        vertices.astype(np.float32), faces, target_reduction=reduction
    )
    return trimesh.Trimesh(vertices, faces, process=False)


def median_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    mesh = bumpy_mesh(TARGET_FACES)
    cameras = orbit_cameras([30.0], [20.0], distance=3.0, orthographic=False, fovy_deg=40.0)
    clip = cameras.to_clip(torch.from_numpy(mesh.vertices.astype(np.float32))).contiguous()
    faces = torch.from_numpy(mesh.faces.astype(np.int64))
    resolution = (RESOLUTION, RESOLUTION)

    rast = torch_backend.rasterize(clip, faces, resolution)
    one_thread_ms = median_ms(lambda: torch_backend.rasterize(clip, faces, resolution), REPEATS)
    torch.set_num_threads(THREADS)
    torch_ms = median_ms(lambda: torch_backend.rasterize(clip, faces, resolution), REPEATS)

    origins, directions = (ray.numpy() for ray in pixel_rays(cameras.mvp[0], RESOLUTION, RESOLUTION))
    start = time.perf_counter()
    intersector = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    intersector.intersects_first(origins[:1], directions[:1])  # builds the BVH
    build_ms = (time.perf_counter() - start) * 1000.0
    embree_ms = median_ms(lambda: intersector.intersects_first(origins, directions), REPEATS)

    ours = rast[0, ..., 3].reshape(-1).long().numpy() - 1
    theirs = intersector.intersects_first(origins, directions)
    print(f"faces: {len(mesh.faces)}")
    print(f"coverage: {float((theirs >= 0).mean()):.4f}")
    print(f"torch_threads: {THREADS}")
    print(f"torch_ms_per_frame: {torch_ms:.1f}")
    print(f"torch_ms_per_frame_1_thread: {one_thread_ms:.1f}")
    print(f"embree_build_ms: {build_ms:.1f}")
    print(f"embree_ms_per_frame: {embree_ms:.1f}")
    print(f"ratio: {torch_ms / embree_ms:.3f}")
    print(f"ratio_1_thread: {one_thread_ms / embree_ms:.3f}")
    print(f"agreement: {float((ours == theirs).mean()):.6f}")


if __name__ == "__main__":
    main()
