"""Loading and validating the six orthographic input views of the ``multiview-to-3d`` task.

View contract (see ``predictors.geometry.cameras``): six orthographic views named front, back, left, right,
top and bottom, object centred, each image spanning world [-1, 1] on both axes with the image axes of
``six_view_cameras``. Therefore:

* all six views are required, and they must be **square** and of **one size** (non-square pixels or
  mixed sizes would break the shared [-1, 1] extent);
* views larger than ``max_side`` pixels are downscaled (Lanczos) to bound memory and time;
* foreground masks come from the alpha channel (alpha > 0.5) when the image has one with some
  transparency (an RGBA image that is opaque everywhere is treated as RGB). Otherwise the
  background is the colour of the 1-pixel border ring (its median): pixels close to it in every channel
  *and connected to the border* are background (``predictors.geometry.masks.background_mask``). Requiring the connection keeps
  object regions that happen to match the background colour (a white shirt on white); the price is that
  see-through holes (a mug handle) stay filled, which only makes the hull slightly larger;
* an empty mask, or one covering at least ``MAX_COVERAGE`` of the image, is rejected (the object must be
  shown whole, on a transparent or plain background).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from predictors.geometry.cameras import SIX_VIEWS, Cameras, six_view_cameras
from predictors.geometry.images import load_image
from predictors.geometry.masks import background_mask

MAX_COVERAGE = 0.95  # largest accepted foreground fraction of an image
MAX_SIDE = 1024  # larger views are downscaled to this side


@dataclass(frozen=True)
class ViewSet:
    """Validated views in ``SIX_VIEWS`` order: images [N, H, W, 3] float in [0, 1], masks [N, H, W] bool."""

    images: torch.Tensor
    masks: torch.Tensor
    names: tuple[str, ...]

    @property
    def cameras(self) -> Cameras:
        """The orthographic cameras of the view contract, one per view."""
        return six_view_cameras()


def load_views(paths: dict[str, Path | None], *, max_side: int = MAX_SIDE) -> ViewSet:
    """Load the six views named in ``SIX_VIEWS`` (front, back, left, right, top, bottom).

    Raises:
        ValueError: a view is missing, unknown, unreadable, not square, of a different size than the
            others, or its foreground is empty or fills the image.
    """
    names = tuple(SIX_VIEWS)
    unknown = sorted(set(paths) - set(names))
    if unknown:
        raise ValueError(f"unknown view name(s): {', '.join(unknown)}; the views are {', '.join(names)}")
    missing = [name for name in names if paths.get(name) is None]
    if missing:
        raise ValueError(
            f"missing view(s): {', '.join(missing)}; multiview-to-3d needs all six views: {', '.join(names)}"
        )
    loaded = {name: load_image(paths[name], name=f"{name} view") for name in names}
    sizes = {name: image.size for name, image in loaded.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {w}x{h}" for name, (w, h) in sizes.items())
        raise ValueError(f"all views must have the same size; got {listed}")
    width, height = sizes[names[0]]
    if width != height:
        raise ValueError(
            f"views must be square (each spans world [-1, 1] on both axes); got {width}x{height}"
        )
    images, masks = [], []
    for name in names:
        image = loaded[name]
        if width > max_side:
            image = image.resize((max_side, max_side), Image.Resampling.LANCZOS)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        transparent = image.mode == "RGBA" and bool((pixels[..., 3] <= 0.5).any())
        mask = pixels[..., 3] > 0.5 if transparent else background_mask(pixels[..., :3], f"{name} view")
        _check_coverage(mask, name)
        images.append(pixels[..., :3])
        masks.append(mask)
    return ViewSet(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), names)


def _check_coverage(mask: np.ndarray, name: str) -> None:
    coverage = float(mask.mean())
    if coverage == 0.0:
        raise ValueError(f"{name} view: no foreground found (the object must be visible in every view)")
    if coverage >= MAX_COVERAGE:
        raise ValueError(
            f"{name} view: the foreground covers {coverage:.0%} of the image; the object must be shown whole "
            f"with background around it (transparent or plain), covering less than {MAX_COVERAGE:.0%}"
        )
