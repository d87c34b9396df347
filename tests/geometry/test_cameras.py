"""Golden values for the camera conventions documented in predictors/geometry/cameras.py."""

import math

import pytest
import torch

from predictors.geometry.cameras import (
    SIX_VIEWS,
    look_at,
    ndc_to_grid,
    orbit_cameras,
    orbit_pose,
    perspective_projection,
    six_view_cameras,
)

# name -> (camera centre direction, image-right axis, image-up axis) in world space.
GOLDEN_SIX_VIEWS = {
    "front": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    "back": ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    "left": ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    "right": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "top": ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
    "bottom": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
}


def test_six_view_order_and_axes():
    cams = six_view_cameras(distance=3.0)
    assert list(SIX_VIEWS) == list(GOLDEN_SIX_VIEWS)
    for i, (centre, right, up) in enumerate(GOLDEN_SIX_VIEWS.values()):
        rotation = cams.world_to_cam[i, :3, :3]
        torch.testing.assert_close(rotation[0], torch.tensor(right, dtype=torch.float32), atol=1e-6, rtol=0)
        torch.testing.assert_close(rotation[1], torch.tensor(up, dtype=torch.float32), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            cams.centres[i], 3.0 * torch.tensor(centre, dtype=torch.float32), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            cams.forwards[i], -torch.tensor(centre, dtype=torch.float32), atol=1e-6, rtol=0
        )


def test_orthographic_projection_maps_points_to_image_axes():
    cams = six_view_cameras(half_extent=1.0)
    point = torch.tensor([[0.5, 0.25, -0.75]])
    ndc = cams.to_ndc(point)[:, 0]
    # front sees (x, y); right sees (-z, y); top sees (x, -z) with image-up = -z.
    torch.testing.assert_close(ndc[0, :2], torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(ndc[3, :2], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(ndc[4, :2], torch.tensor([0.5, 0.75]))
    # depth: the front camera at z=3 sees the point 3.75 away, the back camera 2.25 away.
    depth = cams.depth(point)[:, 0]
    assert depth[0].item() == pytest.approx(3.75)
    assert depth[1].item() == pytest.approx(2.25)
    # larger z/w is farther away
    assert ndc[0, 2] > ndc[1, 2]


def test_perspective_projection_golden():
    proj = perspective_projection(90.0, aspect=2.0, near=1.0, far=3.0)
    point_cam = torch.tensor([1.0, 1.0, -2.0, 1.0])
    clip = proj @ point_cam
    ndc = clip[:3] / clip[3]
    torch.testing.assert_close(ndc, torch.tensor([0.25, 0.5, 0.5]))
    near_pt = proj @ torch.tensor([0.0, 0.0, -1.0, 1.0])
    far_pt = proj @ torch.tensor([0.0, 0.0, -3.0, 1.0])
    assert (near_pt[2] / near_pt[3]).item() == pytest.approx(-1.0)
    assert (far_pt[2] / far_pt[3]).item() == pytest.approx(1.0)


def test_orbit_pose_golden_45_30():
    pose = orbit_pose(45.0, 30.0, 2.0)
    el, az = math.radians(30), math.radians(45)
    eye = torch.tensor([2 * math.cos(el) * math.sin(az), 2 * math.sin(el), 2 * math.cos(el) * math.cos(az)])
    centre = -(pose[:3, :3].T @ pose[:3, 3])
    torch.testing.assert_close(centre, eye.float(), atol=1e-6, rtol=0)
    # the origin is straight ahead, 2 units away
    origin_cam = pose @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(origin_cam[:3], torch.tensor([0.0, 0.0, -2.0]), atol=1e-6, rtol=0)
    # image-up has a positive world-y component and right is horizontal
    assert pose[1, 1] > 0 and abs(pose[0, 1].item()) < 1e-7


def test_perspective_cameras_directions_point_to_centres():
    cams = orbit_cameras([0.0, 90.0], [15.0, 15.0], distance=2.0, orthographic=False, fovy_deg=40.0)
    points = torch.tensor([[0.1, 0.2, 0.3]])
    dirs = cams.directions_to_camera(points)
    expected = cams.centres[:, None] - points[None]
    torch.testing.assert_close(dirs, expected / expected.norm(dim=-1, keepdim=True))


def test_look_at_rejects_parallel_up():
    with pytest.raises(ValueError, match="parallel"):
        look_at([0, 3, 0], [0, 0, 0], [0, 1, 0])


def test_ndc_to_grid_flips_y_for_top_down_images():
    grid = ndc_to_grid(torch.tensor([[0.5, 1.0]]))
    torch.testing.assert_close(grid, torch.tensor([[0.5, -1.0]]))
