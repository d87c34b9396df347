"""ControlNet condition images rendered from the mesh: depth, normal or canny, [N, 3, H, W] in [0, 1].

* depth: inverse depth normalised per view over the foreground to [0, 1] (near = white), background 0
  (SyncMVD ``decode_normalized_depth``).
* normal: camera-space normals (x right, y up, z towards the camera) mapped from [-1, 1] to [0, 1];
  background (0.5, 0.5, 1), a normal facing the camera.
* depth and normal are then blurred as SyncMVD does (Gaussian, kernel 5, sigma 2, reflected borders), which
  softens the aliased silhouettes of the rendered geometry.
* canny: Canny edges (thresholds 100 / 200 on the 0-255 scale, as SyncMVD's ``cv2.Canny(normal, 100, 200)``)
  of the normal image, written with scipy: Sobel gradients (L1 magnitude), non-maximum suppression along the
  quantised gradient direction, hysteresis by connected components. White edges on black.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from predictors.geometry.render import RenderPasses
from predictors.texture.inputs import CONDITIONS

CANNY_LOW, CANNY_HIGH = 100.0, 200.0
BLUR_RADIUS, BLUR_SIGMA = 2, 2.0  # SyncMVD: GaussianBlur(kernel_size=5, sigma=5 // 3 + 1)


def condition_images(kind: str, passes: RenderPasses, world_to_cam: torch.Tensor) -> torch.Tensor:
    """Condition images [N, 3, H, W] in [0, 1] of ``kind`` from render passes (top-down rows)."""
    if kind == "depth":
        image = depth_image(passes.depth, passes.mask)[..., None].expand(-1, -1, -1, 3)
    elif kind == "normal":
        image = normal_image(passes.normals, passes.mask, world_to_cam)
    elif kind == "canny":
        normals = normal_image(passes.normals, passes.mask, world_to_cam)
        grey = (normals.mean(dim=-1) * 255.0).cpu().numpy()
        edges = torch.from_numpy(np.stack([canny_edges(view) for view in grey])).float()
        image = edges[..., None].expand(-1, -1, -1, 3).to(normals.device)
    else:
        raise ValueError(f"unknown condition {kind!r}; allowed: {', '.join(CONDITIONS)}")
    image = image.permute(0, 3, 1, 2).contiguous().float()
    return image if kind == "canny" else gaussian_blur(image)


def gaussian_blur(images: torch.Tensor, radius: int = BLUR_RADIUS, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of images [N, C, H, W] with a (2 * radius + 1)-tap kernel, reflected borders."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    padded = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = torch.nn.functional.conv2d(
        padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels
    )
    return torch.nn.functional.conv2d(
        rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels
    )


def depth_image(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-view normalised inverse depth [N, H, W]: 1 at the nearest foreground point, 0 at the farthest
    and in the background."""
    inverse = torch.where(
        mask, 1.0 / depth.float().clamp_min(1e-6), torch.zeros_like(depth, dtype=torch.float)
    )
    large = torch.finfo(torch.float32).max
    low = torch.where(mask, inverse, torch.full_like(inverse, large)).flatten(1).min(dim=1).values
    high = inverse.flatten(1).max(dim=1).values
    scaled = (inverse - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
    return torch.where(mask, scaled.clamp(0.0, 1.0), torch.zeros_like(scaled))


def normal_image(normals: torch.Tensor, mask: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """Camera-space normals [N, H, W, 3] in [0, 1]; background (0.5, 0.5, 1)."""
    rotation = world_to_cam[:, :3, :3].to(normals.device).float()
    camera = torch.einsum("nij,nhwj->nhwi", rotation, normals.float())
    background = torch.tensor([0.0, 0.0, 1.0], device=normals.device)
    camera = torch.where(mask[..., None], camera, background)
    return (camera + 1.0) * 0.5


def canny_edges(grey: np.ndarray, low: float = CANNY_LOW, high: float = CANNY_HIGH) -> np.ndarray:
    """Binary edge map (float 0/1) of a greyscale image [H, W] on the 0-255 scale."""
    image = grey.astype(np.float64)
    gx = ndimage.sobel(image, axis=1, mode="nearest")
    gy = ndimage.sobel(image, axis=0, mode="nearest")
    magnitude = np.abs(gx) + np.abs(gy)
    # Quantise the gradient direction to 0, 45, 90 or 135 degrees; compare with both neighbours along it.
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = (np.round(angle / 45.0).astype(int)) % 4
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    padded = np.pad(magnitude, 1)
    height, width = image.shape
    keep = np.zeros_like(magnitude, dtype=bool)
    for index, (dy, dx) in offsets.items():
        ahead = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        behind = padded[1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]
        keep |= (sector == index) & (magnitude >= ahead) & (magnitude > behind)
    thin = np.where(keep, magnitude, 0.0)
    weak = thin >= low
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros_like(image, dtype=np.float32)
    strong_labels = np.unique(labels[thin >= high])
    return np.isin(labels, strong_labels[strong_labels > 0]).astype(np.float32)
