"""Limits that bound the memory and time spent on untrusted user uploads.

Every loader takes one of these frozen dataclasses; the defaults suit a public endpoint and tests pass
smaller values to exercise the checks cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

MIB = 1024**2
GIB = 1024**3


def _require_positive(limits: object) -> None:
    for field in fields(limits):  # type: ignore[arg-type]
        value = getattr(limits, field.name)
        if isinstance(value, int | float) and not value > 0:
            raise ValueError(f"{type(limits).__name__}.{field.name} must be positive, got {value}")


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits for extracting a user's .zip upload.

    - ``max_file_bytes`` (200 MiB): size of the .zip file itself.
    - ``max_members`` (2000): entries in the archive, directories included.
    - ``max_total_bytes`` (1 GiB): sum of the members' uncompressed sizes.
    - ``max_compression_ratio`` (200): uncompressed / compressed size of any member of at least
      ``ratio_check_min_bytes`` (1 MiB). Meshes and textures rarely compress beyond ~20x; zip bombs reach
      ~1000x per member.
    """

    max_file_bytes: int = 200 * MIB
    max_members: int = 2000
    max_total_bytes: int = 1 * GIB
    max_compression_ratio: float = 200.0
    ratio_check_min_bytes: int = 1 * MIB

    def __post_init__(self) -> None:
        _require_positive(self)


@dataclass(frozen=True)
class MeshLimits:
    """Limits for loading a user's mesh (a single file or a .zip holding one mesh and its assets).

    - ``max_file_bytes`` (200 MiB): size of the mesh file and of each file it references.
    - ``max_vertices`` / ``max_faces`` (2,000,000 each): after parsing, and for instanced scenes after
      expanding every node (checked before the copies are made).
    - ``max_decoded_bytes`` (1 GiB): total size of the arrays a glTF header asks the parser to allocate
      (buffer views plus accessors), checked before parsing.
    - ``max_texture_pixels`` (8192 x 8192): width x height of the base-colour texture, checked before
      decoding it.
    - ``archive``: limits for a .zip upload.
    """

    max_file_bytes: int = 200 * MIB
    max_vertices: int = 2_000_000
    max_faces: int = 2_000_000
    max_decoded_bytes: int = 1 * GIB
    max_texture_pixels: int = 8192 * 8192
    archive: ArchiveLimits = ArchiveLimits()

    def __post_init__(self) -> None:
        _require_positive(self)


@dataclass(frozen=True)
class ImageLimits:
    """Limits for loading a user's image.

    - ``max_file_bytes`` (50 MiB): size of the encoded file.
    - ``max_pixels`` (4096 x 4096): width x height, checked from the header before decoding. This is below
      Pillow's own decompression-bomb threshold (``Image.MAX_IMAGE_PIXELS``, ~89 MP), so ours triggers first.
    - ``min_side`` (16): smallest accepted width or height.
    - ``formats``: Pillow format names we accept; other decoders are never tried.
    """

    max_file_bytes: int = 50 * MIB
    max_pixels: int = 4096 * 4096
    min_side: int = 16
    formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP")

    def __post_init__(self) -> None:
        _require_positive(self)
        if not self.formats:
            raise ValueError("ImageLimits.formats must name at least one format")


def check_upload_size(path: Path, max_bytes: int, what: str) -> None:
    """Reject a missing, empty or too large upload with a ValueError naming ``what`` (not the temporary file)."""
    if not path.is_file():
        raise ValueError(f"{what} was not found or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{what} is an empty file")
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes; at most {max_bytes} bytes are allowed")
