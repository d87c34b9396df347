"""Raster API: conventions, a ray-casting oracle (trimesh + embreex), interpolation, texture, depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from extensions.raster import backend_name, interpolate, rasterize, texture, torch_backend
from predictors.geometry.cameras import orbit_cameras, pixel_rays

# ---------------------------------------------------------------- helpers


def _barycentric_2d(corners: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Barycentric coordinates of a 2-D point in a triangle [3, 2] by solving the linear system."""
    system = np.vstack([corners.T, np.ones(3)])
    return np.linalg.solve(system, np.array([point[0], point[1], 1.0]))


def _pixel_centre(row: int, col: int, height: int, width: int) -> np.ndarray:
    return np.array([2.0 * (col + 0.5) / width - 1.0, 2.0 * (row + 0.5) / height - 1.0])


def _bumpy_sphere() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(3)
    vertices = sphere.vertices * (1.0 + 0.08 * rng.standard_normal((len(sphere.vertices), 1)))
    return trimesh.Trimesh(vertices * 0.9, sphere.faces, process=False)


def _torus() -> trimesh.Trimesh:
    torus = trimesh.creation.torus(major_radius=0.7, minor_radius=0.25, major_sections=48, minor_sections=24)
    return trimesh.Trimesh(torus.vertices, torus.faces, process=False)


def _clip(mesh: trimesh.Trimesh, cameras) -> torch.Tensor:
    return cameras.to_clip(torch.from_numpy(mesh.vertices.astype(np.float32))).contiguous()


# ---------------------------------------------------------------- conventions


def test_single_triangle_conventions() -> None:
    height, width = 4, 8
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    depths = np.array([0.2, -0.4, 0.6])
    pos = torch.tensor(
        [[[x, y, z, 1.0] for (x, y), z in zip(corners, depths, strict=True)]], dtype=torch.float32
    )
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = rasterize(pos, tri, (height, width))
    assert rast.shape == (1, height, width, 4)
    # Row 0 is the bottom: the triangle fills the lower-left half, so the bottom-left pixel is covered
    # with id 1 (face 0 + 1) and the top-right pixel is empty.
    assert rast[0, 0, 0, 3] == 1.0
    assert torch.equal(rast[0, height - 1, width - 1], torch.zeros(4))
    for row, col in [(0, 0), (1, 2), (0, 5), (2, 1)]:
        expected = _barycentric_2d(corners, _pixel_centre(row, col, height, width))
        assert rast[0, row, col, 3] == 1.0
        np.testing.assert_allclose(rast[0, row, col, :2].numpy(), expected[:2], atol=1e-6)
        np.testing.assert_allclose(float(rast[0, row, col, 2]), expected @ depths, atol=1e-6)


def test_perspective_barycentrics_single_triangle() -> None:
    # The same screen triangle with per-vertex w: barycentrics are perspective-correct (b_k / w_k).
    corners = np.array([[-0.9, -0.8], [0.9, -0.7], [0.1, 0.9]])
    w = np.array([1.0, 3.0, 2.0])
    pos = torch.tensor([[[x * wk, y * wk, 0.0, wk] for (x, y), wk in zip(corners, w, strict=True)]])
    rast = rasterize(pos.float(), torch.tensor([[0, 1, 2]]), (16, 16))
    row, col = 6, 8
    screen = _barycentric_2d(corners, _pixel_centre(row, col, 16, 16))
    perspective = (screen / w) / (screen / w).sum()
    np.testing.assert_allclose(rast[0, row, col, :2].numpy(), perspective[:2], atol=1e-6)


# ---------------------------------------------------------------- ray-casting oracle


@pytest.mark.parametrize("orthographic", [False, True])
@pytest.mark.parametrize("make_mesh", [_bumpy_sphere, _torus])
def test_matches_embree_ray_casting(orthographic: bool, make_mesh) -> None:
    size = 256
    mesh = make_mesh()
    cameras = orbit_cameras([35.0], [25.0], distance=3.0, orthographic=orthographic, half_extent=1.2)
    clip = _clip(mesh, cameras)
    faces = torch.from_numpy(mesh.faces.astype(np.int64))
    rast = rasterize(clip, faces, (size, size))[0].reshape(-1, 4)

    origins, directions = (ray.numpy() for ray in pixel_rays(cameras.mvp[0], size, size))
    intersector = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    hit_face, hit_ray, hit_point = intersector.intersects_id(
        origins, directions, multiple_hits=False, return_locations=True
    )
    expected_ids = np.full(size * size, -1)
    expected_ids[hit_ray] = hit_face
    ours = rast[:, 3].long().numpy() - 1
    assert (ours == expected_ids).mean() >= 0.999
    assert (expected_ids >= 0).mean() > 0.2  # the mesh is really in view

    agree = ours[hit_ray] == hit_face
    rays, faces_hit, points = hit_ray[agree], hit_face[agree], hit_point[agree]
    expected_bary = trimesh.triangles.points_to_barycentric(mesh.triangles[faces_hit], points)
    np.testing.assert_allclose(rast[rays, :2].numpy(), expected_bary[:, :2], atol=1e-4)
    # z/w equals the projected hit point, and interpolated positions equal the hit points.
    hit_clip = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ cameras.mvp[0].double().numpy().T
    np.testing.assert_allclose(rast[rays, 2].numpy(), hit_clip[:, 2] / hit_clip[:, 3], atol=1e-5)
    vertices = torch.from_numpy(mesh.vertices.astype(np.float32))
    world = interpolate(vertices, rast.reshape(1, size, size, 4), faces).reshape(-1, 3)
    np.testing.assert_allclose(world[rays].numpy(), points, atol=1e-4)
    assert torch.all(world[torch.from_numpy(ours < 0)] == 0)


def test_batched_views_chunking_and_index_dtype_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = _torus()
    cameras = orbit_cameras([0.0, 100.0, 200.0], [10.0, -30.0, 60.0], distance=3.0, orthographic=False)
    clip = _clip(mesh, cameras)
    faces = torch.from_numpy(mesh.faces.astype(np.int64))
    batched = rasterize(clip, faces, (48, 64))
    for view in range(3):
        single = rasterize(clip[view : view + 1], faces.int(), (48, 64))
        assert torch.equal(batched[view : view + 1], single)
    monkeypatch.setattr(torch_backend, "CANDIDATES_PER_CHUNK", 500)
    assert torch.equal(rasterize(clip, faces, (48, 64)), batched)


def test_full_screen_faces_larger_than_a_chunk() -> None:
    # Each half of a full-screen quad has a bounding box of about 4.3M pixels: more than one chunk, and
    # enough candidates that box offsets need float64.
    height, width = 2048, 2100
    pos = torch.tensor(
        [[[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [-1.0, 1.0, 0.0, 1.0]]]
    )
    rast = rasterize(pos, torch.tensor([[0, 1, 2], [0, 2, 3]]), (height, width))
    ndc_x = (2.0 * (torch.arange(width) + 0.5) / width - 1.0).double()
    ndc_y = (2.0 * (torch.arange(height) + 0.5) / height - 1.0).double()
    below_diagonal = ndc_y[:, None] < ndc_x[None, :]
    expected = torch.where(below_diagonal, 1.0, 2.0)
    # Within float32 rounding of the shared diagonal both faces cover a pixel and the smaller id wins.
    decided = (ndc_y[:, None] - ndc_x[None, :]).abs() > 1e-5
    assert torch.equal(rast[0, ..., 3][decided], expected[decided].float())
    assert torch.all(rast[0, ..., 3] > 0)


# ---------------------------------------------------------------- depth order, culling, clipping


def _flat_triangle(z: float, w: float = 1.0, shift: float = 0.0) -> list[list[float]]:
    return [
        [(-0.8 + shift) * w, -0.8 * w, z * w, w],
        [(0.8 + shift) * w, -0.8 * w, z * w, w],
        [shift * w, 0.8 * w, z * w, w],
    ]


def test_nearest_depth_wins_in_any_face_order() -> None:
    near, far = _flat_triangle(-0.5, w=2.0), _flat_triangle(0.3, shift=0.1)
    pos = torch.tensor([near + far])
    for tri, near_id in [([[0, 1, 2], [3, 4, 5]], 1), ([[3, 4, 5], [0, 1, 2]], 2)]:
        rast = rasterize(pos, torch.tensor(tri), (16, 16))
        centre = rast[0, 8, 8]
        assert centre[3] == near_id
        np.testing.assert_allclose(float(centre[2]), -0.5, atol=1e-6)


def test_equal_depth_goes_to_the_smallest_face_id() -> None:
    pos = torch.tensor([_flat_triangle(0.1) + _flat_triangle(0.1)])
    rast = rasterize(pos, torch.tensor([[3, 4, 5], [0, 1, 2], [0, 2, 1]]), (16, 16))
    covered = rast[0, ..., 3] > 0
    assert covered.any()
    assert torch.all(rast[0, ..., 3][covered] == 1.0)


def test_faces_behind_the_camera_and_outside_the_depth_range_are_dropped() -> None:
    behind = _flat_triangle(0.0)
    behind[2][3] = -0.5  # one vertex with w < 0
    beyond_far = _flat_triangle(1.5)
    straddling = [[-0.8, -0.8, -2.0, 1.0], [0.8, -0.8, -2.0, 1.0], [0.0, 0.8, 0.0, 1.0]]  # z/w from -2 to 0
    pos = torch.tensor([behind + beyond_far + straddling])
    rast = rasterize(pos, torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]]), (32, 32))
    ids = rast[0, ..., 3]
    assert set(ids.unique().tolist()) == {0.0, 3.0}
    # Only the part of the straddling face with z/w >= -1 (its upper half) survives.
    covered_rows = (ids == 3.0).any(dim=1).nonzero().squeeze(1)
    assert covered_rows.min() >= 15 and covered_rows.max() <= 28
    assert torch.all(rast[0, ..., 2][ids == 3.0] >= -1.0)


def test_degenerate_faces_are_not_drawn() -> None:
    pos = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]])
    rast = rasterize(pos, torch.tensor([[0, 1, 2], [0, 0, 1]]), (16, 16))
    assert torch.all(rast == 0)


def test_large_triangle_ids_round_trip() -> None:
    ids = torch.tensor([0, 1, 2, 16_777_215, 16_777_216, 16_777_217, 40_000_000, 800_000_000])
    encoded = torch_backend.encode_triangle_ids(ids)
    assert encoded.dtype == torch.float32
    assert torch.equal(torch_backend.decode_triangle_ids(encoded), ids)
    assert len(encoded.unique()) == len(ids)


# ---------------------------------------------------------------- interpolate


def test_interpolate_with_a_second_index_buffer_and_batched_attributes() -> None:
    mesh = _bumpy_sphere()
    cameras = orbit_cameras([20.0, 140.0], [10.0, -20.0], distance=3.0, orthographic=False)
    faces = torch.from_numpy(mesh.faces.astype(np.int64))
    rast = rasterize(_clip(mesh, cameras), faces, (64, 64))
    attr = torch.randn(len(mesh.vertices), 5, generator=torch.Generator().manual_seed(0))
    reference = interpolate(attr, rast, faces)

    # Split every corner into its own attribute vertex (as UV seams do), in shuffled order.
    corner_values = attr[faces.reshape(-1)]
    order = torch.randperm(len(corner_values), generator=torch.Generator().manual_seed(1))
    split_attr = corner_values[order]
    split_tri = torch.argsort(order).reshape(-1, 3)
    torch.testing.assert_close(interpolate(split_attr, rast, split_tri), reference)

    # Per-view attributes [B, V, C] use view b's table; [1, V, C] broadcasts.
    per_view = torch.stack([attr, 2.0 * attr + 1.0])
    batched = interpolate(per_view, rast, faces)
    torch.testing.assert_close(batched[0], reference[0])
    mask = (rast[1, ..., 3] > 0)[..., None]
    torch.testing.assert_close(batched[1], (2.0 * reference[1] + 1.0) * mask)
    torch.testing.assert_close(interpolate(attr[None], rast, faces), reference)


def test_interpolate_is_differentiable_in_the_attributes() -> None:
    pos = torch.tensor([_flat_triangle(0.0)])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8))
    attr = torch.zeros(3, 1, requires_grad=True)
    interpolate(attr, rast, torch.tensor([[0, 1, 2]])).sum().backward()
    covered = int((rast[..., 3] > 0).sum())
    np.testing.assert_allclose(float(attr.grad.sum()), covered, rtol=1e-5)


# ---------------------------------------------------------------- texture


def _reference_texture(
    tex: np.ndarray, u: float, v: float, filter_mode: str, boundary_mode: str
) -> np.ndarray:
    """Per-sample oracle: nvdiffrast texel addressing (u -> columns, v -> rows, row 0 at v = 0)."""
    height, width, _ = tex.shape

    def fetch(row: int, col: int) -> np.ndarray:
        if boundary_mode == "wrap":
            return tex[row % height, col % width]
        if boundary_mode == "clamp":
            return tex[min(max(row, 0), height - 1), min(max(col, 0), width - 1)]
        inside = 0 <= row < height and 0 <= col < width
        return tex[row, col] if inside else np.zeros(tex.shape[-1])

    if boundary_mode == "wrap":
        u, v = u - np.floor(u), v - np.floor(v)
    if filter_mode == "nearest":
        return fetch(int(np.floor(v * height)), int(np.floor(u * width)))
    x, y = u * width - 0.5, v * height - 0.5
    col, row = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - col, y - row
    top = (1 - fx) * fetch(row, col) + fx * fetch(row, col + 1)
    bottom = (1 - fx) * fetch(row + 1, col) + fx * fetch(row + 1, col + 1)
    return (1 - fy) * top + fy * bottom


@pytest.mark.parametrize("filter_mode", ["linear", "nearest"])
@pytest.mark.parametrize("boundary_mode", ["wrap", "clamp", "zero"])
def test_texture_matches_per_sample_formula(filter_mode: str, boundary_mode: str) -> None:
    generator = torch.Generator().manual_seed(4)
    tex = torch.rand(2, 5, 7, 3, generator=generator)
    uv = torch.rand(2, 6, 9, 2, generator=generator) * 1.6 - 0.3  # includes samples outside [0, 1]
    out = texture(tex, uv, filter_mode=filter_mode, boundary_mode=boundary_mode)
    assert out.shape == (2, 6, 9, 3)
    for batch in range(2):
        for row in range(6):
            for col in range(9):
                u, v = uv[batch, row, col].double().tolist()
                expected = _reference_texture(tex[batch].double().numpy(), u, v, filter_mode, boundary_mode)
                np.testing.assert_allclose(out[batch, row, col].numpy(), expected, atol=1e-5)


def test_texture_broadcasts_a_single_texture_and_rejects_bad_modes() -> None:
    tex = torch.rand(1, 4, 4, 2)
    uv = torch.rand(3, 2, 2, 2)
    out = texture(tex, uv)
    torch.testing.assert_close(out[2], texture(tex, uv[2:3])[0])
    with pytest.raises(ValueError, match="filter_mode"):
        texture(tex, uv, filter_mode="cubic")
    with pytest.raises(ValueError, match="boundary_mode"):
        texture(tex, uv, boundary_mode="mirror")


# ---------------------------------------------------------------- dispatch and validation


def test_cpu_tensors_use_the_torch_backend_and_bad_inputs_raise() -> None:
    assert backend_name("cpu") == "torch"
    with pytest.raises(ValueError, match="pos"):
        rasterize(torch.zeros(3, 4), torch.tensor([[0, 1, 2]]), (4, 4))
    with pytest.raises(ValueError, match="tri"):
        rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 3]]), (4, 4))
    with pytest.raises(ValueError, match="resolution"):
        rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (0, 4))


def test_unknown_backend_setting_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTER_BACKEND", "opengl")
    with pytest.raises(ValueError, match="RASTER_BACKEND"):
        rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (4, 4))


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        assert backend_name("cuda") == "torch"  # no native backend installed: torch on every device
    else:
        assert backend_name("cuda") == "nvdiffrast"
    monkeypatch.setenv("RASTER_BACKEND", "torch")
    assert backend_name("cuda") == "torch"
    monkeypatch.setenv("RASTER_BACKEND", "nvdiffrast")
    with pytest.raises(ValueError, match="CUDA"):
        backend_name("cpu")


@pytest.mark.cuda
def test_torch_backend_matches_nvdiffrast_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("nvdiffrast.torch")
    from extensions.raster import nvdiffrast_backend

    mesh = _bumpy_sphere()
    cameras = orbit_cameras([35.0, 200.0], [25.0, -10.0], distance=3.0, orthographic=False).to("cuda")
    clip = _clip(mesh, cameras.to("cpu")).cuda()
    faces = torch.from_numpy(mesh.faces.astype(np.int64)).cuda()
    ours = torch_backend.rasterize(clip, faces, (256, 256))
    theirs = nvdiffrast_backend.rasterize(clip, faces, (256, 256))
    same = ours[..., 3] == theirs[..., 3]
    assert same.float().mean() >= 0.999
    torch.testing.assert_close(ours[..., :3][same], theirs[..., :3][same], atol=1e-4, rtol=0)
    attr = torch.rand(len(mesh.vertices), 3, device="cuda")
    torch.testing.assert_close(
        torch_backend.interpolate(attr, theirs, faces), nvdiffrast_backend.interpolate(attr, theirs, faces)
    )
    tex = torch.rand(1, 16, 16, 3, device="cuda")
    uv = torch.rand(2, 8, 8, 2, device="cuda") * 1.4 - 0.2
    for mode in ("wrap", "clamp", "zero"):
        torch.testing.assert_close(
            torch_backend.texture(tex, uv, "linear", mode),
            nvdiffrast_backend.texture(tex, uv, "linear", mode),
        )
