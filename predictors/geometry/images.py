"""Loading user-uploaded images safely: bounded size and pixel count, known formats only."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from predictors.geometry.limits import ImageLimits, check_upload_size

_DEFAULT_LIMITS = ImageLimits()
_DISPLAY_NAMES = {"WEBP": "WebP"}


def load_image(
    path: str | Path, *, name: str = "image", limits: ImageLimits = _DEFAULT_LIMITS
) -> Image.Image:
    """Decode an uploaded image into an upright RGB or RGBA ``PIL.Image``.

    The result is RGBA when the file carries transparency (alpha channel, palette or colour-key
    transparency), otherwise RGB. EXIF orientation is applied. The pixel count is checked from the header
    before decoding. Every error is a ValueError whose message names the input ``name``.
    """
    check_upload_size(Path(path), limits.max_file_bytes, name)
    data = Path(path).read_bytes()
    image = _open_header(data, name, limits)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ValueError(
            f"{name} is {width}x{height} pixels; at most {limits.max_pixels} pixels are allowed "
            f"(e.g. {_side(limits.max_pixels)}x{_side(limits.max_pixels)})"
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{name} is truncated or corrupt: {error}") from error
    if min(image.size) < limits.min_side:
        raise ValueError(
            f"{name} is {image.width}x{image.height} pixels; each side must be at least {limits.min_side}"
        )
    return _to_rgb_or_rgba(image)


def _open_header(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    """Open the image lazily (header only), trying only the allowed decoders."""
    supported = ", ".join(_DISPLAY_NAMES.get(fmt, fmt) for fmt in limits.formats)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=list(limits.formats))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ValueError(f"{name} has too many pixels: {error}") from error
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ValueError(
                f"{name} is not an image we can read: {error} ({supported} are supported)"
            ) from error


def image_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Decode any Pillow image into uint8 RGB [H, W, 3], dropping alpha (row 0 is the top)."""
    return np.ascontiguousarray(np.asarray(_eight_bit(image).convert("RGB"), dtype=np.uint8))


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    image = _eight_bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (``convert`` would clip it at 255); other modes unchanged."""
    if not image.mode.startswith("I"):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(pixels / 257.0 + 0.5, 0, 255).astype(np.uint8))


def _side(pixels: int) -> int:
    return int(pixels**0.5)
