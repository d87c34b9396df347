"""Render passes, colour previews and UV-space rasterization against analytic values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import binary_fill_holes

from predictors.geometry.cameras import orbit_cameras, six_view_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.render import rasterize_uv_space, render_color, render_passes

SIZE = 64


def _front_camera():
    """Orthographic camera on +z looking at the origin: image right = +x, up = +y, 2 world units wide."""
    return orbit_cameras([0.0], [0.0], distance=3.0, orthographic=True, half_extent=1.0)


def _pixel_centres_world(size: int) -> tuple[np.ndarray, np.ndarray]:
    """World x and y of the front camera's pixel centres in a top-down image [size, size]."""
    centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(centres, -centres)  # row 0 is the top: largest y


def _box_with_flat_normals(half: float) -> Mesh:
    """An axis-aligned cube with split vertices per side, so smooth vertex normals equal face normals."""
    box = trimesh.creation.box(extents=(2 * half,) * 3)
    corners = box.vertices[box.faces].reshape(-1, 3)
    return Mesh(corners, np.arange(len(corners)).reshape(-1, 3))


def _quad(z: float = 0.0, uv: bool = False, tilt_deg: float = 0.0, half: float = 1.0) -> Mesh:
    """Square [-half, half]^2 at height z facing +z (optionally tilted about x); uv = (xy / half + 1) / 2."""
    xy = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half
    angle = np.radians(tilt_deg)
    vertices = np.column_stack([xy[:, 0], xy[:, 1] * np.cos(angle), z + xy[:, 1] * np.sin(angle)])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    if not uv:
        return Mesh(vertices, faces)
    return Mesh(vertices, faces, uvs=(xy / half + 1.0) / 2.0, uv_faces=faces)


def test_box_passes_match_analytic_values() -> None:
    passes = render_passes(_box_with_flat_normals(0.5), _front_camera(), (SIZE, SIZE))
    x, y = _pixel_centres_world(SIZE)
    inside = (np.abs(x) < 0.5) & (np.abs(y) < 0.5)
    np.testing.assert_array_equal(passes.mask[0].numpy(), inside)
    np.testing.assert_allclose(passes.depth[0].numpy(), np.where(inside, 2.5, 0.0), atol=1e-5)
    expected_positions = np.stack([x, y, np.full_like(x, 0.5)], -1) * inside[..., None]
    np.testing.assert_allclose(passes.positions[0].numpy(), expected_positions, atol=1e-5)
    np.testing.assert_allclose(
        passes.normals[0].numpy(), np.array([0.0, 0.0, 1.0]) * inside[..., None], atol=1e-5
    )
    assert torch.all(passes.face_ids[0][~passes.mask[0]] == -1)
    assert passes.uv is None
    # Visible face ids belong to the +z side.
    corners = _box_with_flat_normals(0.5)
    visible = corners.vertices[corners.faces[passes.face_ids[0][passes.mask[0]].numpy()]]
    np.testing.assert_allclose(visible[..., 2], 0.5)


def test_sphere_passes_match_analytic_values() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    mesh = Mesh(sphere.vertices, sphere.faces)
    passes = render_passes(mesh, _front_camera(), (SIZE, SIZE))
    x, y = _pixel_centres_world(SIZE)
    radial = x**2 + y**2
    well_inside = radial < 0.78**2
    assert passes.mask[0].numpy()[well_inside].all()
    assert not passes.mask[0].numpy()[radial > 0.8**2].any()
    height = np.sqrt(np.clip(0.8**2 - radial, 0.0, None))
    np.testing.assert_allclose(passes.depth[0].numpy()[well_inside], (3.0 - height)[well_inside], atol=3e-3)
    surface = np.stack([x, y, height], -1)[well_inside]
    np.testing.assert_allclose(passes.positions[0].numpy()[well_inside], surface, atol=3e-3)
    normals = passes.normals[0].numpy()[well_inside]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(normals, surface / 0.8, atol=0.03)


def test_perspective_depth_is_the_camera_axis_distance() -> None:
    cameras = orbit_cameras([0.0], [0.0], distance=3.0, orthographic=False, fovy_deg=40.0)
    passes = render_passes(_quad(z=0.2, half=2.0), cameras, (SIZE, SIZE))
    assert passes.mask[0].all()
    np.testing.assert_allclose(passes.depth[0].numpy(), 2.8, atol=1e-5)
    np.testing.assert_allclose(passes.positions[0, ..., 2].numpy(), 0.2, atol=1e-5)
    # Top-down: world y decreases down the rows, x increases along the columns.
    assert torch.all(passes.positions[0, :-1, :, 1] > passes.positions[0, 1:, :, 1])
    assert torch.all(passes.positions[0, :, :-1, 0] < passes.positions[0, :, 1:, 0])


def test_images_are_top_down() -> None:
    box = trimesh.creation.box(extents=(1.0, 0.5, 1.0))
    box.apply_translation([0.0, 0.5, 0.0])  # y in [0.25, 0.75]: the upper half of the world
    mask = render_passes(Mesh(box.vertices, box.faces), _front_camera(), (SIZE, SIZE)).mask[0]
    rows = mask.any(dim=1).nonzero().squeeze(1)
    assert rows.min() == SIZE // 8 and rows.max() == 3 * SIZE // 8 - 1


def test_render_color_samples_texture_rows_in_image_layout() -> None:
    # Image layout: row 0 is the top (v = 1). Each quadrant of the quad must show its own texel.
    image = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], dtype=np.uint8)
    mesh = _quad(uv=True).copy_with(texture=image)
    rgba = render_color(mesh, _front_camera(), (8, 8))
    assert rgba.shape == (1, 8, 8, 4)
    corners = {(0, 0): image[0, 0], (0, 7): image[0, 1], (7, 0): image[1, 0], (7, 7): image[1, 1]}
    for (row, col), expected in corners.items():
        np.testing.assert_allclose(rgba[0, row, col, :3].numpy(), expected / 255.0, atol=1e-6)
    assert torch.all(rgba[..., 3] == 1.0)


def test_render_color_vertex_colours_background_and_shading() -> None:
    quad = _quad()
    cameras = _front_camera()
    grey = render_color(
        quad.copy_with(vertices=quad.vertices * 0.5), cameras, (SIZE, SIZE), background=(0, 0, 1)
    )
    centre, corner = grey[0, SIZE // 2, SIZE // 2], grey[0, 0, 0]
    np.testing.assert_allclose(centre.numpy(), [0.8, 0.8, 0.8, 1.0], atol=1e-6)
    np.testing.assert_allclose(corner.numpy(), [0.0, 0.0, 1.0, 0.0], atol=1e-6)

    red = quad.copy_with(vertex_colors=np.tile(np.array([[255, 0, 0]], dtype=np.uint8), (4, 1)))
    np.testing.assert_allclose(render_color(red, cameras, (8, 8))[0, 3, 3].numpy(), [1.0, 0.0, 0.0, 1.0])

    facing = render_color(quad, cameras, (8, 8), shading="lambert")
    np.testing.assert_allclose(facing[0, 4, 4, :3].numpy(), 0.8, atol=1e-5)  # cos = 1: unchanged
    tilted = render_color(_quad(tilt_deg=60.0), cameras, (8, 8), shading="lambert")
    np.testing.assert_allclose(tilted[0, 4, 4, :3].numpy(), 0.8 * (0.3 + 0.7 * 0.5), atol=1e-5)
    with pytest.raises(ValueError, match="shading"):
        render_color(quad, cameras, (8, 8), shading="phong")


def test_rasterize_uv_space_covers_charts_and_interpolates_positions() -> None:
    # One triangle of the quad is mapped into the lower-left half of UV space: u + v <= 1.
    xy = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    vertices = np.column_stack([xy, np.zeros(3)])
    uvs = (xy + 1.0) / 2.0
    mesh = Mesh(vertices, np.array([[0, 1, 2]]), uvs=uvs, uv_faces=np.array([[0, 1, 2]]))
    size = 32
    passes = rasterize_uv_space(mesh, size)
    centres = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(centres, centres[::-1])  # image layout: row 0 is v = 1
    inside = u + v < 1.0
    decided = np.abs(u + v - 1.0) > 1e-6  # texel centres exactly on the edge may go either way
    np.testing.assert_array_equal(passes.mask.numpy()[decided], inside[decided])
    inside = passes.mask.numpy()
    expected = np.stack([2 * u - 1, 2 * v - 1, np.zeros_like(u)], -1) * inside[..., None]
    np.testing.assert_allclose(passes.positions.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        passes.normals.numpy(), np.array([0.0, 0.0, 1.0]) * inside[..., None], atol=1e-5
    )
    assert torch.all(passes.face_ids[passes.mask] == 0) and torch.all(passes.face_ids[~passes.mask] == -1)


def test_rasterize_uv_space_uses_the_unsplit_topology_for_normals() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    faces = sphere.faces
    # A UV layout with every face split into its own little triangle (all seams), like an atlas.
    count = len(faces)
    cells = int(np.ceil(np.sqrt(count)))
    cell = np.arange(count)
    origin = np.stack([cell % cells, cell // cells], -1) / cells
    uvs = (origin[:, None, :] + np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]) / cells).reshape(-1, 2)
    mesh = Mesh(sphere.vertices, faces, uvs=uvs, uv_faces=np.arange(3 * count).reshape(-1, 3))
    passes = rasterize_uv_space(mesh, 256)
    covered_faces = passes.face_ids[passes.mask].unique()
    assert len(covered_faces) > 0.95 * count
    positions, normals = passes.positions[passes.mask], passes.normals[passes.mask]
    np.testing.assert_allclose(positions.norm(dim=-1).numpy(), 1.0, atol=0.03)
    np.testing.assert_allclose(
        (normals * positions / positions.norm(dim=-1, keepdim=True)).sum(-1).numpy(), 1.0, atol=0.01
    )


def test_rasterize_uv_space_needs_matching_uvs() -> None:
    with pytest.raises(ValueError, match="uvs"):
        rasterize_uv_space(_quad(), 16)
    quad = _quad(uv=True)
    with pytest.raises(ValueError, match="uv_faces"):
        rasterize_uv_space(quad.copy_with(uv_faces=quad.uv_faces[:1]), 16)


def test_closed_meshes_render_without_cracks():
    """Pixel centres on an edge shared by two faces must be covered by one of them (no see-through cracks)."""
    cylinder = trimesh.creation.cylinder(radius=0.28, height=1.0, sections=48)
    cylinder.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    cases = [
        (Mesh(cylinder.vertices, cylinder.faces), six_view_cameras()),
        (
            Mesh(sphere.vertices, sphere.faces),
            orbit_cameras(list(range(0, 360, 15)), [13.0] * 24, orthographic=False),
        ),
    ]
    for mesh, cameras in cases:
        masks = render_passes(mesh, cameras, (256, 256)).mask.numpy()
        cracks = sum(int((binary_fill_holes(mask) & ~mask).sum()) for mask in masks)
        assert cracks == 0
