"""Safe image loading: modes, orientation, limits and decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from predictors.geometry.images import load_image
from predictors.geometry.limits import ImageLimits

NAME = "reference image"


def save(tmp_path: Path, image: Image.Image, filename: str, **options: object) -> Path:
    path = tmp_path / filename
    image.save(path, **options)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (PNG spec, section 11.2.2)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image data gets decoded."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_png_with_alpha_is_rgba(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    image = load_image(save(tmp_path, Image.fromarray(pixels), "a.png"), name=NAME)
    assert image.mode == "RGBA" and image.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_jpeg_is_rgb(tmp_path: Path) -> None:
    image = load_image(save(tmp_path, Image.new("RGB", (40, 30), (200, 30, 40)), "a.jpg", quality=95))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image, dtype=int) - [200, 30, 40]).max() <= 3


@pytest.mark.parametrize(
    ("image", "options"),
    [
        (Image.new("LA", (20, 20), (100, 50)), {}),
        (Image.new("P", (20, 20), 0), {"transparency": 0}),
        (Image.new("RGB", (20, 20), (1, 2, 3)), {"transparency": (1, 2, 3)}),
    ],
    ids=["LA", "palette-transparency", "colour-key"],
)
def test_transparency_gives_rgba(tmp_path: Path, image: Image.Image, options: dict) -> None:
    loaded = load_image(save(tmp_path, image, "t.png", **options))
    assert loaded.mode == "RGBA"
    expected_alpha = 50 if image.mode == "LA" else 0
    assert np.asarray(loaded)[..., 3].max() == expected_alpha


def test_grey_and_sixteen_bit_images_become_rgb(tmp_path: Path) -> None:
    grey = load_image(save(tmp_path, Image.new("L", (20, 20), 77), "g.png"))
    assert grey.mode == "RGB" and tuple(np.asarray(grey)[0, 0]) == (77, 77, 77)
    deep = np.full((20, 20), 40000, dtype=np.uint16)  # 16-bit 40000 is 8-bit 40000 * 255 / 65535 = 155.6
    deep[0, 0] = 65535
    loaded = np.asarray(load_image(save(tmp_path, Image.fromarray(deep), "g16.png")))
    assert (
        loaded.shape == (20, 20, 3)
        and loaded[0, 0].tolist() == [255] * 3
        and loaded[1, 1].tolist() == [156] * 3
    )


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high: left half red, right half blue. EXIF orientation 6 means "rotate 90 degrees
    # clockwise to display", which moves the left (red) half to the top.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = stored.getexif()
    exif[0x0112] = 6
    image = load_image(save(tmp_path, stored, "o.jpg", exif=exif, quality=95))
    pixels = np.asarray(image, dtype=int)
    assert image.size == (20, 40)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 50
    assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 50


def test_webp_is_supported(tmp_path: Path) -> None:
    image = load_image(save(tmp_path, Image.new("RGBA", (20, 20), (9, 9, 9, 128)), "a.webp", lossless=True))
    assert image.mode == "RGBA" and tuple(np.asarray(image)[0, 0]) == (9, 9, 9, 128)


def test_random_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(
        ValueError, match=f"^{NAME} is not an image we can read.*PNG, JPEG, WebP are supported"
    ):
        load_image(path, name=NAME)


def test_other_formats_are_not_tried(tmp_path: Path) -> None:
    path = save(tmp_path, Image.new("RGB", (20, 20)), "a.bmp")
    with pytest.raises(ValueError, match=f"{NAME} is not an image we can read"):
        load_image(path, name=NAME)
    assert load_image(path, limits=ImageLimits(formats=("BMP",))).size == (20, 20)


@pytest.mark.usefixtures("no_decoding")
def test_decompression_bomb_is_rejected_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ValueError, match=f"^{NAME} (is 100000x100000 pixels|has too many pixels)"):
        load_image(path, name=NAME)
    path.write_bytes(png_claiming_size(5000, 5000))  # under Pillow's own limit, over ours
    with pytest.raises(ValueError, match=f"^{NAME} is 5000x5000 pixels; at most 16777216"):
        load_image(path, name=NAME)


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, Image.new("RGB", (100, 100)), "a.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ValueError, match="100x100 pixels"):
        load_image(path, name=NAME, limits=ImageLimits(max_pixels=64 * 64))


def test_too_small_empty_large_truncated_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{NAME} is 8x40 pixels; each side must be at least 16"):
        load_image(save(tmp_path, Image.new("RGB", (8, 40)), "s.png"), name=NAME)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{NAME} is an empty file"):
        load_image(tmp_path / "empty.png", name=NAME)
    big = save(tmp_path, Image.new("RGB", (64, 64)), "big.png")
    with pytest.raises(ValueError, match=f"{NAME} is {big.stat().st_size} bytes; at most 10 bytes"):
        load_image(big, name=NAME, limits=ImageLimits(max_file_bytes=10))
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match=f"{NAME} is truncated or corrupt"):
        load_image(tmp_path / "cut.png", name=NAME)
    with pytest.raises(ValueError, match=f"{NAME} was not found"):
        load_image(tmp_path / "missing.png", name=NAME)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="min_side must be positive"):
        ImageLimits(min_side=0)
    with pytest.raises(ValueError, match="at least one format"):
        ImageLimits(formats=())
