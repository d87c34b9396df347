"""Texture baking: round trip of a known texture, visibility, view weights and the unseen-texel fill.

Oracles: textures defined analytically (a smooth colour field of the 3D point behind each texel, computed
from our own closed-form UV parametrisations), brute-force nearest-neighbour search for the fill.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictors.geometry.bake import bake_texture, fill_unseen
from predictors.geometry.cameras import SIX_VIEWS, orbit_cameras, six_view_cameras
from predictors.geometry.mesh import Mesh


def colour_field(points: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in [0.1, 0.9] of world points [..., 3]."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack(
        [
            0.5 + 0.4 * np.sin(2.5 * x + 1.0 * y),
            0.5 + 0.4 * np.cos(2.0 * y - 1.5 * z),
            0.5 + 0.4 * np.sin(2.0 * z + x),
        ],
        axis=-1,
    )


def texel_uv(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of the texel centres of an image-layout texture (row 0 is v = 1)."""
    centres = (np.arange(size) + 0.5) / size
    return np.meshgrid(centres, centres[::-1], indexing="xy")


def uv_sphere(radius: float, size: int, rows: int = 48, columns: int = 96) -> tuple[Mesh, np.ndarray]:
    """Latitude-longitude sphere (u = longitude, v = latitude) and its expected texture (``colour_field``)."""

    def point(u, v):
        theta, phi = np.pi * (1.0 - v), 2.0 * np.pi * u  # theta from the north pole (+y)
        return radius * np.stack(
            [np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1
        )

    # Positions: two poles and (rows - 1) rings; UV vertices: the full (rows + 1) x (columns + 1) grid.
    ring_v = 1.0 - np.arange(1, rows) / rows
    ring_u = np.arange(columns) / columns
    rings = point(*np.meshgrid(ring_u, ring_v, indexing="xy")).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, radius, 0.0]], rings, [[0.0, -radius, 0.0]]])

    def position_index(row, column):  # row 0 = north pole, row = rows = south pole
        if row == 0:
            return 0
        if row == rows:
            return len(vertices) - 1
        return 1 + (row - 1) * columns + column % columns

    def uv_index(row, column):
        return row * (columns + 1) + column

    uu, vv = np.meshgrid(np.arange(columns + 1) / columns, 1.0 - np.arange(rows + 1) / rows, indexing="xy")
    uvs = np.stack([uu, vv], -1).reshape(-1, 2)
    faces, uv_faces = [], []
    for row in range(rows):
        for column in range(columns):
            quad = [(row, column), (row + 1, column), (row + 1, column + 1), (row, column + 1)]
            for triangle in ([0, 1, 2], [0, 2, 3]):
                if (row == 0 and triangle == [0, 2, 3]) or (row == rows - 1 and triangle == [0, 1, 2]):
                    continue  # degenerate at a pole
                corners = [quad[i] for i in triangle]
                faces.append([position_index(*c) for c in corners])
                uv_faces.append([uv_index(*c) for c in corners])
    u, v = texel_uv(size)
    expected = colour_field(point(u, v))
    mesh = Mesh(vertices=vertices, faces=np.array(faces), uvs=uvs, uv_faces=np.array(uv_faces))
    return mesh, expected


def cross_box(half: tuple[float, float, float], size: int) -> tuple[Mesh, np.ndarray, np.ndarray]:
    """Box on 8 shared corners, each face in its own cell of a 3 x 2 UV grid (with margins).

    Returns the mesh, the expected texture and each texel's world distance to its face's border
    (-1 outside the face cells).
    """
    hx, hy, hz = half
    corners = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])

    def corner(sx, sy, sz):
        return (sx > 0) * 4 + (sy > 0) * 2 + (sz > 0)

    # Each face: 4 corners counter-clockwise seen from outside, as (origin, u axis, v axis) in sign space.
    quads = {
        "+x": [(1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)],
        "-x": [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)],
        "+y": [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)],
        "-y": [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)],
        "+z": [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
        "-z": [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],
    }
    margin = 0.04
    faces, uv_faces, uvs = [], [], []
    expected = np.zeros((size, size, 3))
    edge_distance = np.full((size, size), -1.0)
    u, v = texel_uv(size)
    for index, quad in enumerate(quads.values()):
        cell_u0, cell_v0 = (index % 3) / 3.0, (index // 3) / 2.0
        lo_u, hi_u = cell_u0 + margin, cell_u0 + 1 / 3 - margin
        lo_v, hi_v = cell_v0 + margin, cell_v0 + 1 / 2 - margin
        base = len(uvs)
        uvs += [[lo_u, lo_v], [hi_u, lo_v], [hi_u, hi_v], [lo_u, hi_v]]
        ids = [corner(*c) for c in quad]
        faces += [[ids[0], ids[1], ids[2]], [ids[0], ids[2], ids[3]]]
        uv_faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
        # Texels of this cell map bilinearly onto the face.
        s, t = (u - lo_u) / (hi_u - lo_u), (v - lo_v) / (hi_v - lo_v)
        cell = (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
        p = [corners[i] for i in ids]
        points = p[0] + s[..., None] * (p[1] - p[0]) + t[..., None] * (p[3] - p[0])
        expected[cell] = colour_field(points[cell])
        width, height = np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[3] - p[0])
        distance = np.minimum(np.minimum(s, 1 - s) * width, np.minimum(t, 1 - t) * height)
        edge_distance[cell] = distance[cell]
    mesh = Mesh(vertices=corners, faces=np.array(faces), uvs=np.array(uvs), uv_faces=np.array(uv_faces))
    return mesh, expected, edge_distance


def views_of(mesh: Mesh, expected: np.ndarray, cameras, size: int = 512):
    from predictors.geometry.render import render_color

    textured = mesh.copy_with(texture=(expected * 255.0 + 0.5).astype(np.uint8))
    rgba = render_color(textured, cameras, (size, size), shading="unlit")
    return rgba[..., :3], rgba[..., 3] > 0.5, textured.texture


def round_cameras(orthographic: bool):
    """Orthographic: the six axis views plus four diagonal ones; perspective: four views at elevation 15
    (MVDream-like) plus one from high above and one from far below."""
    if orthographic:
        azimuths, elevations = zip(*SIX_VIEWS.values(), strict=True)
        return orbit_cameras([*azimuths, 45, 135, 225, 315], [*elevations, 30, -30, 30, -30])
    return orbit_cameras(
        [0, 90, 180, 270, 45, 225], [15, 15, 15, 15, 70, -70], distance=3.0, orthographic=False, fovy_deg=40.0
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.mark.parametrize("orthographic", [True, False])
def test_sphere_texture_round_trip(orthographic):
    size = 256
    mesh, expected = uv_sphere(0.8, size)
    cameras = round_cameras(orthographic)
    images, masks, truth = views_of(mesh, expected, cameras)
    texture, seen = bake_texture(mesh, images, masks, cameras, texture_size=size)
    assert texture.shape == (size, size, 3) and texture.dtype == np.uint8
    assert seen.mean() > 0.95  # the whole [0, 1]^2 is covered by the latitude-longitude layout
    assert psnr(texture[seen], truth[seen]) >= 40.0


def test_box_texture_round_trip_with_six_views():
    size = 384
    mesh, expected, edge_distance = cross_box((0.9, 0.6, 0.36), size)
    cameras = six_view_cameras()
    images, masks, truth = views_of(mesh, expected, cameras)
    texture, seen = bake_texture(mesh, images, masks, cameras, texture_size=size)
    inside = edge_distance >= 0
    # Only texels within ~2 view pixels (0.008) of a box edge may be lost to the mask erosion.
    assert seen[edge_distance > 0.008].all()
    assert seen[inside].mean() > 0.95
    assert not seen[~inside].any()
    assert psnr(texture[seen], truth[seen]) >= 40.0
    # gutters are filled from the nearest seen texel, not left black
    assert texture[~inside].min() > 0


def two_facing_quads() -> Mesh:
    """Two parallel squares facing +z, at z = 0.5 (UV left half) and z = -0.5 (UV right half)."""
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    vertices = np.concatenate([np.c_[square, np.full(4, 0.5)], np.c_[square, np.full(4, -0.5)]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    uv_square = np.array([[0.05, 0.05], [0.45, 0.05], [0.45, 0.95], [0.05, 0.95]])
    uvs = np.concatenate([uv_square, uv_square + np.array([0.5, 0.0])])
    return Mesh(vertices=vertices, faces=faces, uvs=uvs, uv_faces=faces.copy())


def constant_views(colours: list[tuple[float, float, float]], size: int = 64):
    images = torch.tensor(colours, dtype=torch.float32)[:, None, None, :].expand(len(colours), size, size, 3)
    return images.contiguous(), torch.ones(len(colours), size, size, dtype=torch.bool)


def test_occluded_texels_get_no_weight():
    mesh = two_facing_quads()
    images, masks = constant_views([(1.0, 0.0, 0.0)])
    texture, seen = bake_texture(mesh, images, masks, orbit_cameras([0.0], [0.0]), texture_size=64)
    u, _ = texel_uv(64)
    front, back = (u > 0.07) & (u < 0.43), (u > 0.57) & (u < 0.93)
    middle_rows = slice(8, 56)
    assert seen[middle_rows][front[middle_rows]].all()
    assert not seen[back].any()  # hidden behind the front square, although it faces the camera
    assert (texture[seen] == [255, 0, 0]).all()


def test_view_weights_and_facing():
    mesh = two_facing_quads()
    cameras = orbit_cameras([0.0, 40.0], [0.0, 0.0])
    images, masks = constant_views([(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)])
    only_second, seen = bake_texture(mesh, images, masks, cameras, texture_size=32, view_weights=[0.0, 1.0])
    assert (only_second[seen] == [0, 0, 255]).all()
    blended, seen = bake_texture(mesh, images, masks, cameras, texture_size=32)
    # weights cos(0)^4 = 1 and cos(40 deg)^4 = 0.344: red : blue = 1 : 0.344
    share = np.cos(np.radians(40.0)) ** 4 / (1.0 + np.cos(np.radians(40.0)) ** 4)
    front = blended[seen & (texel_uv(32)[0] < 0.5)]
    np.testing.assert_allclose(front[:, 2], 255 * share, atol=1.0)
    np.testing.assert_allclose(front[:, 0], 255 * (1 - share), atol=1.0)


def test_fill_unseen_takes_the_nearest_seen_texel():
    rng = np.random.default_rng(3)
    size = 40
    seen = rng.random((size, size)) < 0.03
    texture = np.zeros((size, size, 2))
    rows, columns = np.nonzero(seen)
    texture[rows, columns] = np.c_[rows, columns]  # each seen texel stores its own coordinates
    filled = fill_unseen(texture, seen)
    grid_r, grid_c = np.mgrid[:size, :size]
    distance_to_source = np.hypot(grid_r - filled[..., 0], grid_c - filled[..., 1])
    brute_nearest = np.min(np.hypot(grid_r[..., None] - rows, grid_c[..., None] - columns), axis=-1)
    np.testing.assert_allclose(distance_to_source, brute_nearest)
    assert (filled[seen] == texture[seen]).all()
    assert (fill_unseen(texture, np.zeros_like(seen)) == texture).all()


def test_bake_rejects_bad_inputs():
    mesh = two_facing_quads()
    cameras = orbit_cameras([0.0], [0.0])
    images, masks = constant_views([(1.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match="no UV layout"):
        bake_texture(mesh.copy_with(uvs=None, uv_faces=None), images, masks, cameras)
    with pytest.raises(ValueError, match="images must be"):
        bake_texture(mesh, images[..., :2], masks, cameras)
    with pytest.raises(ValueError, match="view weights"):
        bake_texture(mesh, images, masks, cameras, view_weights=[1.0, 2.0])
