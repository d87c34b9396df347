"""Projection atlas: validity on closed meshes and visual hulls, folds, gutters, and a bake round trip.

Oracles, independent of the atlas code: brute-force point-in-triangle coverage counts on a grid of sample
points (overlaps), exact vertex-to-segment distances between different charts (gutters, charts found as
connected pieces of the UV mesh), signed areas, and a texture round trip through render + bake.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import trimesh
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from predictors.geometry.bake import bake_texture, fill_unseen
from predictors.geometry.cameras import SIX_VIEWS, orbit_cameras, six_view_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import AtlasError, projection_atlas
from predictors.geometry.render import rasterize_uv_space, render_color, render_passes
from predictors.geometry.surface import extract_surface
from predictors.geometry.visual_hull import carve_visual_hull

# ------------------------------------------------------------------------------------------- meshes


def as_mesh(shape: trimesh.Trimesh) -> Mesh:
    return Mesh(vertices=np.asarray(shape.vertices), faces=np.asarray(shape.faces))


def sphere() -> Mesh:
    return as_mesh(trimesh.creation.icosphere(subdivisions=4, radius=0.8))


def torus() -> Mesh:
    return as_mesh(trimesh.creation.torus(0.5, 0.25, major_sections=64, minor_sections=32))


def box() -> Mesh:
    return as_mesh(trimesh.creation.box(extents=(1.6, 1.0, 0.6)))


def helical_ramp(turns: float = 1.5, steps: int = 120, across: int = 4) -> Mesh:
    """A closed, thin helical ramp around the y axis (a spiral staircase slab).

    Its top faces all face about +y and form one connected region that winds around more than once, so its
    orthographic projection along y folds over itself.
    """
    inner, outer, rise, thickness = 0.3, 0.8, 0.4, 0.06  # rise per turn > thickness: no self-intersection
    # Cross-section: a rectangle (radius, height) traversed counter-clockwise, ``across`` samples per side.
    t = np.linspace(0.0, 1.0, across, endpoint=False)
    section = np.concatenate(
        [
            np.c_[inner + (outer - inner) * t, np.full(across, -thickness / 2)],
            np.c_[np.full(across, outer), -thickness / 2 + thickness * t],
            np.c_[outer - (outer - inner) * t, np.full(across, thickness / 2)],
            np.c_[np.full(across, inner), thickness / 2 - thickness * t],
        ]
    )
    ring = len(section)
    angles = np.linspace(0.0, 2.0 * np.pi * turns, steps + 1)
    radius = np.broadcast_to(section[None, :, 0], (steps + 1, ring))
    height = section[None, :, 1] + rise * angles[:, None] / (2.0 * np.pi)
    points = np.stack([radius * np.cos(angles)[:, None], height, radius * np.sin(angles)[:, None]], axis=-1)
    points = points.reshape(-1, 3)
    faces = []
    for step in range(steps):
        for k in range(ring):
            a, b = step * ring + k, step * ring + (k + 1) % ring
            faces += [[a, b, b + ring], [a, b + ring, a + ring]]
    # End caps: a fan around each end section's centre.
    centres = np.stack([points[:ring].mean(axis=0), points[-ring:].mean(axis=0)])
    start_centre, end_centre = len(points), len(points) + 1
    for k in range(ring):
        faces.append([start_centre, (k + 1) % ring, k])
        faces.append([end_centre, steps * ring + k, steps * ring + (k + 1) % ring])
    vertices, faces = np.concatenate([points, centres]), np.array(faces)
    if trimesh.Trimesh(vertices, faces, process=False).volume < 0:
        faces = faces[:, ::-1]
    return Mesh(vertices=vertices, faces=faces)


@pytest.fixture(scope="module")
def torus_hull() -> Mesh:
    """A 20k-face visual hull of a torus, as the multiview-to-3d task makes it from six rendered views."""
    shape = trimesh.creation.torus(0.5, 0.3, major_sections=96, minor_sections=48)
    cameras = six_view_cameras()
    masks = render_passes(as_mesh(shape), cameras, (256, 256)).mask
    return extract_surface(carve_visual_hull(masks, cameras, resolution=128), 1.0, target_faces=20_000)


# ------------------------------------------------------------------------------------------- oracles


def signed_double_areas(uvs: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    a, b, c = (uvs[uv_faces[:, i]].astype(np.float64) for i in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def coverage_counts(triangles: np.ndarray, resolution: int) -> np.ndarray:
    """How many triangles [N, 3, 2] (UV units) strictly contain each sample point of a regular grid."""
    counts = np.zeros((resolution, resolution), dtype=np.int32)
    corners = triangles.astype(np.float64) * resolution
    for a, b, c in corners:
        low = np.floor(np.minimum(np.minimum(a, b), c) - 0.5).astype(int).clip(0, resolution - 1)
        high = np.ceil(np.maximum(np.maximum(a, b), c) - 0.5).astype(int).clip(0, resolution - 1)
        xs, ys = np.meshgrid(np.arange(low[0], high[0] + 1) + 0.5, np.arange(low[1], high[1] + 1) + 0.5)
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        w_a = ((b[0] - xs) * (c[1] - ys) - (b[1] - ys) * (c[0] - xs)) / area
        w_b = ((c[0] - xs) * (a[1] - ys) - (c[1] - ys) * (a[0] - xs)) / area
        inside = (w_a > 0) & (w_b > 0) & (1 - w_a - w_b > 0)
        counts[low[1] : high[1] + 1, low[0] : high[0] + 1] += inside
    return counts


def uv_charts(uvs: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    """Chart id of every UV vertex: connected pieces of the UV mesh."""
    count = len(uvs)
    edges = np.concatenate([uv_faces[:, [0, 1]], uv_faces[:, [1, 2]]])
    graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    return csgraph.connected_components(graph, directed=False)[1]


def smallest_gap_between_charts(uvs: np.ndarray, uv_faces: np.ndarray) -> float:
    """Smallest distance (UV units) from a chart's boundary vertex to another chart's boundary edge."""
    charts = uv_charts(uvs, uv_faces)
    edges = uv_faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    keys, counts = np.unique(np.sort(edges, axis=1), axis=0, return_counts=True)
    boundary = keys[counts == 1]
    start, end = uvs[boundary[:, 0]].astype(np.float64), uvs[boundary[:, 1]].astype(np.float64)
    points = np.unique(boundary.ravel())
    reach = 0.05 + 0.5 * np.linalg.norm(end - start, axis=1).max()
    near = cKDTree(0.5 * (start + end)).query_ball_point(uvs[points].astype(np.float64), reach)
    point = np.repeat(points, [len(n) for n in near])
    edge = np.concatenate([np.asarray(n, dtype=np.int64) for n in near])
    other = charts[boundary[edge, 0]] != charts[point]
    point, edge = point[other], edge[other]
    p, a, b = uvs[point].astype(np.float64), start[edge], end[edge]
    t = np.clip(np.sum((p - a) * (b - a), axis=1) / np.maximum(np.sum((b - a) ** 2, axis=1), 1e-30), 0, 1)
    return float(np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1).min(initial=np.inf))


def assert_valid_atlas(
    source: Mesh, atlas: Mesh, *, texture_size: int, padding: int, oracle_size: int
) -> None:
    assert atlas.texture is None and atlas.uv_faces.shape == source.faces.shape
    np.testing.assert_array_equal(atlas.vertices[atlas.faces], source.vertices[source.faces])
    assert atlas.uv_faces.min() >= 0 and atlas.uv_faces.max() < len(atlas.uvs)
    assert np.all((atlas.uvs >= 0.0) & (atlas.uvs <= 1.0))
    # A UV vertex never stands for two positions (charts split positions, never merge them).
    corners = np.unique(np.stack([atlas.uv_faces.ravel(), atlas.faces.ravel()], axis=1), axis=0)
    assert len(corners) == len(np.unique(corners[:, 0]))
    assert np.all(signed_double_areas(atlas.uvs, atlas.uv_faces) > 0)  # counter-clockwise, positive area
    assert coverage_counts(atlas.uvs[atlas.uv_faces], oracle_size).max() <= 1
    border = padding / texture_size
    assert atlas.uvs.min() >= border * 0.999 and atlas.uvs.max() <= 1.0 - border * 0.999
    assert smallest_gap_between_charts(atlas.uvs, atlas.uv_faces) >= border * 0.999


# --------------------------------------------------------------------------------------------- tests


def test_oracles_detect_overlap_and_measure_gaps():
    uvs = np.array([[0.1, 0.1], [0.5, 0.1], [0.1, 0.5], [0.2, 0.2], [0.6, 0.1], [0.6, 0.5], [0.9, 0.1]])
    overlapping = np.array([[0, 1, 2], [3, 1, 2]])
    assert coverage_counts(uvs[overlapping], 64).max() == 2
    assert coverage_counts(uvs[overlapping[:1]], 256).sum() == pytest.approx(0.08 * 256 * 256, rel=0.02)
    apart = np.array([[0, 1, 2], [4, 6, 5]])  # two charts 0.1 apart (vertex (0.5, 0.1) to edge x = 0.6)
    assert smallest_gap_between_charts(uvs, apart) == pytest.approx(0.1)


@pytest.mark.parametrize("make", [sphere, torus, box], ids=["sphere", "torus", "box"])
def test_closed_meshes_get_valid_atlases(make):
    mesh = make()
    atlas = projection_atlas(mesh, texture_size=512, padding_texels=4)
    assert_valid_atlas(mesh, atlas, texture_size=512, padding=4, oracle_size=1024)
    charts = uv_charts(atlas.uvs, atlas.uv_faces).max() + 1
    assert 6 <= charts <= 40  # roughly one chart per direction and side, not an island per face
    assert signed_double_areas(atlas.uvs, atlas.uv_faces).sum() / 2 > 0.35  # a reasonably dense packing


def test_box_charts_are_its_six_sides_with_uniform_texel_density():
    mesh = box()
    atlas = projection_atlas(mesh)
    assert uv_charts(atlas.uvs, atlas.uv_faces).max() + 1 == 6
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    world = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    ratio = signed_double_areas(atlas.uvs, atlas.uv_faces) / world
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # flat sides project without distortion


def test_visual_hull_atlas_is_valid_and_deterministic(torus_hull):
    atlas = projection_atlas(torus_hull)
    assert_valid_atlas(torus_hull, atlas, texture_size=1024, padding=4, oracle_size=2048)
    again = projection_atlas(torus_hull)
    np.testing.assert_array_equal(atlas.uvs, again.uvs)
    np.testing.assert_array_equal(atlas.uv_faces, again.uv_faces)


def test_folded_projection_is_cut_into_valid_charts():
    ramp = helical_ramp()
    # The oracle sees the fold: the top faces, projected straight along y, cover points twice.
    corners = ramp.vertices[ramp.faces].astype(np.float64)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    top = normals[:, 1] / np.linalg.norm(normals, axis=1) > 0.9
    naive = corners[top][:, :, [0, 2]] * 0.5 + 0.5  # (x, z) into the unit square
    assert coverage_counts(naive, 256).max() >= 2
    atlas = projection_atlas(ramp)
    assert_valid_atlas(ramp, atlas, texture_size=1024, padding=4, oracle_size=1024)


def test_camera_directions_and_degenerate_faces():
    mesh = sphere()
    # Three degenerate faces: two with a repeated corner, one with three collinear corners.
    extra = len(mesh.vertices)
    midpoint = 0.5 * (mesh.vertices[mesh.faces[0, 0]] + mesh.vertices[mesh.faces[0, 1]])
    vertices = np.concatenate([mesh.vertices, midpoint[None]])
    faces = np.concatenate([mesh.faces, [[0, 0, 1], [mesh.faces[0, 0], extra, mesh.faces[0, 1]], [2, 3, 3]]])
    broken = Mesh(vertices=vertices, faces=faces)
    cameras = orbit_cameras(
        [*(a for a, _ in SIX_VIEWS.values()), 45, 225], [*(e for _, e in SIX_VIEWS.values()), 30, -30]
    )
    directions = -cameras.forwards.numpy()
    atlas = projection_atlas(broken, directions=directions, texture_size=256, padding_texels=2)
    assert_valid_atlas(broken, atlas, texture_size=256, padding=2, oracle_size=1024)


def test_directions_that_miss_faces_raise_atlas_error():
    with pytest.raises(AtlasError, match="face none of the"):
        projection_atlas(sphere(), directions=np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))
    assert issubclass(AtlasError, RuntimeError)


def test_too_much_padding_raises_atlas_error():
    with pytest.raises(AtlasError, match=r"do not fit|no room"):
        projection_atlas(torus(), texture_size=16, padding_texels=4)


def test_bad_arguments_raise_value_error():
    mesh = box()
    with pytest.raises(ValueError, match="texture_size"):
        projection_atlas(mesh, texture_size=0)
    with pytest.raises(ValueError, match="padding_texels"):
        projection_atlas(mesh, padding_texels=-1)
    with pytest.raises(ValueError, match="directions"):
        projection_atlas(mesh, directions=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="directions"):
        projection_atlas(mesh, directions=np.ones((4, 2)))
    with pytest.raises(ValueError, match="faces"):
        projection_atlas(Mesh(vertices=np.zeros((3, 3)), faces=np.zeros((0, 3))))


def colour_field(points: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in [0.1, 0.9] of world points [..., 3]."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack(
        [
            0.5 + 0.4 * np.sin(2.5 * x + y),
            0.5 + 0.4 * np.cos(2.0 * y - 1.5 * z),
            0.5 + 0.4 * np.sin(2.0 * z + x),
        ],
        axis=-1,
    )


def test_bake_round_trip_through_the_atlas(torus_hull):
    size = 512
    atlas = projection_atlas(torus_hull, texture_size=size)
    # Ground truth: the colour field at every texel's 3D point, gutters filled from the nearest texel.
    passes = rasterize_uv_space(atlas, size)
    truth = colour_field(passes.positions.numpy())
    truth = fill_unseen(truth, passes.mask.numpy())
    textured = atlas.copy_with(texture=(np.clip(truth, 0, 1) * 255.0 + 0.5).astype(np.uint8))
    azimuths, elevations = zip(*SIX_VIEWS.values(), strict=True)
    cameras = orbit_cameras([*azimuths, 45, 135, 225, 315], [*elevations, 30, -30, 30, -30])
    rgba = render_color(textured, cameras, (512, 512), shading="unlit")
    images, masks = rgba[..., :3].contiguous(), rgba[..., 3] > 0.5
    texture, seen = bake_texture(atlas, images, masks, cameras, texture_size=size)
    assert seen[passes.mask.numpy()].mean() > 0.9
    error = texture[seen].astype(np.float64) - textured.texture[seen].astype(np.float64)
    psnr = 10.0 * np.log10(255.0**2 / max(np.mean(error**2), 1e-12))
    assert psnr >= 40.0
