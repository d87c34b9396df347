"""Cameras: orbit placement, orthographic and perspective projections, and projection helpers.

Conventions (tested with golden values in ``tests/test_cameras.py``):

* World space is right-handed and y-up; normalised objects fit the cube [-1, 1]^3.
* A camera looks down its own -z axis with +y up and +x to the right (OpenGL). ``world_to_cam`` maps
  world points into that frame; ``proj`` maps camera space to OpenGL clip space, where x/w, y/w and z/w
  lie in [-1, 1] inside the frustum and a larger z/w is farther away.
* Orbit cameras sit at ``distance * (cos(el) sin(az), sin(el), cos(el) cos(az))``: azimuth 0 is the
  front (+z), azimuth 90 is the right side (+x), elevation 90 looks straight down. Their up vector is
  the derivative of that position with respect to elevation, so it is well defined at the poles: the
  top view (elevation 90, azimuth 0) has image-up = -z, the bottom view has image-up = +z.
* Images are top-down (row 0 is the top row, the PNG convention). NDC x = -1 is the left edge of the
  left pixel column and NDC y = +1 is the top edge of row 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# The six-view contract of the ``multiview-to-3d`` task: name -> (azimuth, elevation) in degrees.
SIX_VIEWS: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0),
    "back": (180.0, 0.0),
    "left": (270.0, 0.0),
    "right": (90.0, 0.0),
    "top": (0.0, 90.0),
    "bottom": (0.0, -90.0),
}


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float]) -> torch.Tensor:
    """World-to-camera matrix [4, 4] of a camera at ``eye`` looking at ``target`` (OpenGL axes)."""
    eye_t = torch.as_tensor(eye, dtype=torch.float64)
    forward = torch.as_tensor(target, dtype=torch.float64) - eye_t
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.as_tensor(up, dtype=torch.float64))
    if right.norm() < 1e-9:
        raise ValueError("look_at: the up vector is parallel to the viewing direction")
    right = right / right.norm()
    true_up = torch.linalg.cross(right, forward)
    rotation = torch.stack([right, true_up, -forward])
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ eye_t
    return matrix.float()


def orbit_pose(azimuth_deg: float, elevation_deg: float, distance: float) -> torch.Tensor:
    """World-to-camera matrix [4, 4] of an orbit camera looking at the origin."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = [
        distance * math.cos(el) * math.sin(az),
        distance * math.sin(el),
        distance * math.cos(el) * math.cos(az),
    ]
    up = [-math.sin(el) * math.sin(az), math.cos(el), -math.sin(el) * math.cos(az)]
    return look_at(eye, [0.0, 0.0, 0.0], up)


def orthographic_projection(half_extent: float = 1.0, near: float = 0.1, far: float = 10.0) -> torch.Tensor:
    """Orthographic projection [4, 4] showing the square [-half_extent, half_extent]^2 of camera space."""
    proj = torch.zeros(4, 4)
    proj[0, 0] = 1.0 / half_extent
    proj[1, 1] = 1.0 / half_extent
    proj[2, 2] = -2.0 / (far - near)
    proj[2, 3] = -(far + near) / (far - near)
    proj[3, 3] = 1.0
    return proj


def perspective_projection(
    fovy_deg: float, aspect: float = 1.0, near: float = 0.1, far: float = 10.0
) -> torch.Tensor:
    """OpenGL perspective projection [4, 4]; ``aspect`` is width / height."""
    focal = 1.0 / math.tan(math.radians(fovy_deg) / 2.0)
    proj = torch.zeros(4, 4)
    proj[0, 0] = focal / aspect
    proj[1, 1] = focal
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -2.0 * far * near / (far - near)
    proj[3, 2] = -1.0
    return proj


@dataclass(frozen=True)
class Cameras:
    """A batch of N cameras.

    ``world_to_cam`` and ``proj`` are float32 [N, 4, 4]; ``orthographic`` says how view directions are
    computed (constant per camera, or from the camera centre to each point).
    """

    world_to_cam: torch.Tensor
    proj: torch.Tensor
    orthographic: bool

    def __len__(self) -> int:
        return self.world_to_cam.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int]) -> Cameras:
        if isinstance(index, int):
            index = [index]
        return Cameras(self.world_to_cam[index], self.proj[index], self.orthographic)

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.world_to_cam.to(device), self.proj.to(device), self.orthographic)

    @property
    def mvp(self) -> torch.Tensor:
        """World-to-clip matrices [N, 4, 4]."""
        return self.proj @ self.world_to_cam

    @property
    def centres(self) -> torch.Tensor:
        """Camera centres in world space [N, 3]."""
        rotation = self.world_to_cam[:, :3, :3]
        return -(rotation.transpose(1, 2) @ self.world_to_cam[:, :3, 3:4]).squeeze(-1)

    @property
    def forwards(self) -> torch.Tensor:
        """Unit viewing directions (camera -z axis) in world space [N, 3]."""
        return -self.world_to_cam[:, 2, :3]

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """World points [P, 3] to clip coordinates [N, P, 4]."""
        homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)
        return homogeneous @ self.mvp.transpose(1, 2)

    def to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """World points [P, 3] to normalised device coordinates [N, P, 3]."""
        clip = self.to_clip(points)
        return clip[..., :3] / clip[..., 3:4]

    def depth(self, points: torch.Tensor) -> torch.Tensor:
        """Distance of world points [P, 3] in front of each camera along its axis [N, P]."""
        homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)
        return -(homogeneous @ self.world_to_cam[:, 2, :].T).T

    def directions_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """Unit vectors from each world point [P, 3] towards each camera [N, P, 3]."""
        if self.orthographic:
            return (-self.forwards)[:, None, :].expand(len(self), points.shape[0], 3)
        offset = self.centres[:, None, :] - points[None]
        return offset / offset.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def ndc_to_grid(ndc_xy: torch.Tensor) -> torch.Tensor:
    """NDC (x right, y up) to ``grid_sample`` coordinates of a top-down image (align_corners=False)."""
    return torch.stack([ndc_xy[..., 0], -ndc_xy[..., 1]], dim=-1)


def orbit_cameras(
    azimuths_deg: Sequence[float],
    elevations_deg: Sequence[float],
    *,
    distance: float = 3.0,
    orthographic: bool = True,
    half_extent: float = 1.0,
    fovy_deg: float = 40.0,
    near: float = 0.1,
    far: float = 10.0,
) -> Cameras:
    """Orbit cameras looking at the origin, one per (azimuth, elevation) pair."""
    if len(azimuths_deg) != len(elevations_deg):
        raise ValueError("orbit_cameras: azimuths and elevations must have the same length")
    poses = torch.stack(
        [orbit_pose(a, e, distance) for a, e in zip(azimuths_deg, elevations_deg, strict=True)]
    )
    if orthographic:
        proj = orthographic_projection(half_extent, near, far)
    else:
        proj = perspective_projection(fovy_deg, 1.0, near, far)
    return Cameras(poses, proj.expand(len(poses), 4, 4).clone(), orthographic)


def six_view_cameras(half_extent: float = 1.0, distance: float = 3.0) -> Cameras:
    """The six orthographic cameras of the multiview contract, in ``SIX_VIEWS`` order."""
    azimuths = [a for a, _ in SIX_VIEWS.values()]
    elevations = [e for _, e in SIX_VIEWS.values()]
    return orbit_cameras(azimuths, elevations, distance=distance, orthographic=True, half_extent=half_extent)


def pixel_rays(mvp: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of one camera (world-to-clip ``mvp`` [4, 4]), in float64.

    Returns origins on the near plane and unit directions, [H * W, 3] each, in the rasterizer's order
    (row 0 = bottom row, as in ``extensions.raster``), e.g. for a ray-casting oracle.
    """
    inverse = torch.linalg.inv(mvp.double())
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ndc_x = (2.0 * (cols.double() + 0.5) / width - 1.0).reshape(-1)
    ndc_y = (2.0 * (rows.double() + 0.5) / height - 1.0).reshape(-1)
    ones = torch.ones_like(ndc_x)

    def unproject(ndc_z: float) -> torch.Tensor:
        points = torch.stack([ndc_x, ndc_y, ndc_z * ones, ones], dim=-1) @ inverse.T
        return points[:, :3] / points[:, 3:]

    near, far = unproject(-1.0), unproject(1.0)
    direction = far - near
    return near, direction / direction.norm(dim=1, keepdim=True)
