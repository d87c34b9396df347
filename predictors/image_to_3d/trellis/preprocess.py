"""The input image of ``image-to-3d``: object mask, square crop around the object, 518² on black (TRELLIS).

The mask is the image's alpha when it has some transparency. Otherwise, when ``remove_background`` is on,
it comes from the shared background remover (``predictors.background``: U²-Net when installed, else the
plain-background rule).
The crop is the square of side ``1.2 * max(w, h)`` centred on the bounding box of alpha > 0.8, resized to
518² with Lanczos; colours are multiplied by alpha so the background is black.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from predictors.background import BackgroundRemover
from predictors.geometry.images import load_image
from predictors.runtime import log

OUTPUT_SIZE = 518
CROP_MARGIN = 1.2
FOREGROUND_ALPHA = 0.8  # bounding box of alpha above this (0-1 scale)
MAX_MASK_INPUT_SIDE = 1024  # images are shrunk to this longest side before background removal


@dataclass
class PreparedImage:
    """The conditioning image (RGB 518², black background) and where its mask came from."""

    image: Image.Image
    mask_source: str  # "alpha", "u2net", "plain-background colour" or "none"


def prepare_image(
    path: str | Path, background: BackgroundRemover, *, remove_background: bool = True
) -> PreparedImage:
    """Load an uploaded image and turn it into TRELLIS's conditioning image.

    Raises:
        ValueError: not a readable image, too small or too large, no foreground (fully transparent), or no
            alpha and a background that cannot be removed.
    """
    image = load_image(path, name="image")
    if image.mode == "RGBA" and np.asarray(image.getchannel("A")).min() < 255:
        rgba, source = image, "alpha"
    elif not remove_background:
        rgba, source = image.convert("RGBA"), "none"
    else:
        image = image.convert("RGB")
        scale = MAX_MASK_INPUT_SIDE / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        alpha, source = background.alpha(image, name="image"), background.method
        if source != "u2net":
            log("image-to-3d: no u2net weights installed; using the plain-background mask")
        rgba = image.copy()
        rgba.putalpha(Image.fromarray(alpha, mode="L"))
    return PreparedImage(crop_to_object(rgba), source)


def crop_to_object(rgba: Image.Image) -> Image.Image:
    """Square crop around the object (alpha > 0.8), resized to 518², RGB multiplied by alpha."""
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    rows, columns = np.nonzero(alpha > FOREGROUND_ALPHA)
    if len(rows) == 0:
        raise ValueError(
            "image has no foreground: no pixel is more than 80% opaque (is it fully transparent, or is the "
            "object the same colour as the background?)"
        )
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    centre_x, centre_y = (left + right) / 2.0, (top + bottom) / 2.0
    half = max(right - left, bottom - top) * CROP_MARGIN / 2.0
    box = (int(centre_x - half), int(centre_y - half), int(centre_x + half), int(centre_y + half))
    if box[2] <= box[0] or box[3] <= box[1]:
        box = (box[0], box[1], box[0] + 1, box[1] + 1)
    cropped = rgba.crop(box).resize((OUTPUT_SIZE, OUTPUT_SIZE), Image.LANCZOS)
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    rgb = pixels[..., :3] * pixels[..., 3:4]
    return Image.fromarray(np.round(rgb * 255.0).astype(np.uint8), mode="RGB")
