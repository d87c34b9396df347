"""UV unwrapping: atlas validity checked by rasterising the UV layout, decimation, and the fallback atlas."""

import numpy as np
import pytest
import trimesh

from predictors.geometry.mesh import Mesh
from predictors.geometry.uv import decimate, fallback_atlas, unwrap_uv

COVERAGE_RESOLUTION = 512


def icosphere(subdivisions: int) -> Mesh:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.9)
    return Mesh(vertices=sphere.vertices, faces=sphere.faces)


def uv_coverage_counts(uvs: np.ndarray, uv_faces: np.ndarray, resolution: int) -> np.ndarray:
    """How many UV triangles cover each texel centre (brute-force point-in-triangle test per triangle)."""
    counts = np.zeros((resolution, resolution), dtype=np.int32)
    corners = uvs[uv_faces].astype(np.float64) * resolution
    for a, b, c in corners:
        low = np.floor(np.minimum(np.minimum(a, b), c) - 0.5).astype(int).clip(0, resolution - 1)
        high = np.ceil(np.maximum(np.maximum(a, b), c) - 0.5).astype(int).clip(0, resolution - 1)
        xs, ys = np.meshgrid(np.arange(low[0], high[0] + 1) + 0.5, np.arange(low[1], high[1] + 1) + 0.5)
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area == 0:
            continue
        w_a = ((b[0] - xs) * (c[1] - ys) - (b[1] - ys) * (c[0] - xs)) / area
        w_b = ((c[0] - xs) * (a[1] - ys) - (c[1] - ys) * (a[0] - xs)) / area
        inside = (w_a > 0) & (w_b > 0) & (1 - w_a - w_b > 0)
        counts[low[1] : high[1] + 1, low[0] : high[0] + 1] += inside
    return counts


def uv_areas(uvs: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    a, b, c = (uvs[uv_faces[:, i]].astype(np.float64) for i in range(3))
    return 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def assert_valid_atlas(source: Mesh, unwrapped: Mesh) -> None:
    faces = len(source.faces)
    assert unwrapped.uvs.ndim == 2 and unwrapped.uvs.shape[1] == 2
    assert unwrapped.uv_faces.shape == (faces, 3)
    assert unwrapped.uv_faces.min() >= 0 and unwrapped.uv_faces.max() < len(unwrapped.uvs)
    assert np.all(unwrapped.uvs[unwrapped.uv_faces] >= 0) and np.all(unwrapped.uvs[unwrapped.uv_faces] <= 1)
    # Faces and corner order are untouched: every corner still has its original position.
    np.testing.assert_array_equal(unwrapped.vertices[unwrapped.faces], source.vertices[source.faces])
    # Each UV vertex belongs to exactly one position (seams split UVs, a UV vertex never spans two positions).
    corners = np.stack([unwrapped.uv_faces.ravel(), unwrapped.faces.ravel()], axis=1)
    assert len(np.unique(corners, axis=0)) == len(np.unique(corners[:, 0]))
    # No degenerate UV triangles for non-degenerate faces, and no overlap between any two triangles.
    assert np.all(uv_areas(unwrapped.uvs, unwrapped.uv_faces) > 0)
    assert uv_areas(unwrapped.uvs, unwrapped.uv_faces).sum() <= 1.0
    assert uv_coverage_counts(unwrapped.uvs, unwrapped.uv_faces, COVERAGE_RESOLUTION).max() <= 1


def test_coverage_oracle_detects_overlap():
    uvs = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9], [0.2, 0.2]], dtype=np.float32)
    overlapping = np.array([[0, 1, 2], [3, 1, 2]])
    assert uv_coverage_counts(uvs, overlapping, 64).max() == 2
    assert uv_coverage_counts(uvs, overlapping[:1], 64).sum() == pytest.approx(0.32 * 64 * 64, rel=0.05)


def test_unwrap_icosphere_gives_valid_deterministic_atlas():
    sphere = icosphere(3)
    first = unwrap_uv(sphere)
    assert_valid_atlas(sphere, first)
    assert len(first.uvs) > len(sphere.vertices)  # a closed sphere needs seams
    assert uv_areas(first.uvs, first.uv_faces).sum() > 0.3  # xatlas packs reasonably tightly
    second = unwrap_uv(sphere)
    np.testing.assert_array_equal(first.uvs, second.uvs)
    np.testing.assert_array_equal(first.uv_faces, second.uv_faces)


def test_unwrap_keeps_vertex_colours_and_drops_old_texture():
    sphere = icosphere(2)
    colours = np.random.default_rng(0).integers(0, 256, (len(sphere.vertices), 3), dtype=np.uint8)
    textured = sphere.copy_with(vertex_colors=colours, texture=np.zeros((4, 4, 3), np.uint8))
    unwrapped = unwrap_uv(textured)
    assert unwrapped.texture is None
    np.testing.assert_array_equal(unwrapped.vertex_colors, colours)


def test_unwrap_decimates_above_max_faces():
    sphere = icosphere(4)  # 5120 faces
    unwrapped = unwrap_uv(sphere, max_faces=1000)
    assert 0 < len(unwrapped.faces) <= 1000
    assert unwrapped.uv_faces.shape == unwrapped.faces.shape
    radii = np.linalg.norm(unwrapped.vertices, axis=1)
    np.testing.assert_allclose(radii, 0.9, atol=0.05)


def test_timeout_falls_back_to_grid_atlas(caplog):
    sphere = icosphere(2)
    with caplog.at_level("WARNING", logger="predictors.geometry.uv"):
        unwrapped = unwrap_uv(sphere, timeout_s=1e-3)
    assert "fallback" in caplog.text
    assert_valid_atlas(sphere, unwrapped)
    assert len(unwrapped.uvs) == 3 * len(sphere.faces)


@pytest.mark.parametrize("face_count", [1, 2, 7, 50])
def test_fallback_atlas_is_valid_and_counter_clockwise(face_count):
    uvs, uv_faces = fallback_atlas(face_count)
    assert uv_faces.shape == (face_count, 3)
    assert np.all((uvs >= 0) & (uvs <= 1))
    a, b, c = (uvs[uv_faces[:, i]].astype(np.float64) for i in range(3))
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert np.all(signed > 0)
    assert uv_coverage_counts(uvs, uv_faces, 256).max() <= 1


def test_decimate_reduces_faces_and_keeps_colours_of_nearest_vertices():
    sphere = icosphere(4)
    # Colour by octant, so nearest-vertex lookup is easy to predict from the decimated positions.
    octant = (sphere.vertices > 0).astype(np.uint8) * 255
    reduced = decimate(sphere.copy_with(vertex_colors=octant), 800)
    assert len(reduced.faces) <= 800
    assert reduced.uvs is None and reduced.texture is None
    expected = (reduced.vertices > 0).astype(np.uint8) * 255
    away_from_planes = np.all(np.abs(reduced.vertices) > 0.05, axis=1)
    np.testing.assert_array_equal(reduced.vertex_colors[away_from_planes], expected[away_from_planes])
    assert decimate(sphere, 10_000) is sphere


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda mesh: unwrap_uv(mesh, max_faces=0), "max_faces"),
        (lambda mesh: unwrap_uv(mesh, timeout_s=0), "timeout_s"),
        (lambda mesh: decimate(mesh, 0), "target_faces"),
        (lambda mesh: unwrap_uv(mesh.copy_with(faces=np.zeros((0, 3), np.int64))), "at least one face"),
    ],
)
def test_invalid_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call(icosphere(1))


@pytest.mark.parametrize(
    ("worker", "logged"),
    [("import sys; sys.exit('xatlas crashed')", "xatlas crashed"), ("print('not an npz')", "unreadable")],
)
def test_worker_failure_falls_back_to_grid_atlas(monkeypatch, caplog, worker, logged):
    monkeypatch.setattr("predictors.geometry.uv._WORKER_COMMAND", worker)
    sphere = icosphere(1)
    with caplog.at_level("WARNING", logger="predictors.geometry.uv"):
        unwrapped = unwrap_uv(sphere)
    assert logged in caplog.text
    assert_valid_atlas(sphere, unwrapped)
