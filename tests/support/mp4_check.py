"""Inspect an MP4 file with the ffmpeg bundled in imageio-ffmpeg (there is no ffprobe)."""

from __future__ import annotations

from pathlib import Path


def probe_mp4(path: Path | str) -> tuple[int, int, int, str, str]:
    """(frame count, width, height, codec, pixel format) of the first video stream of ``path``.

    The frame count comes from decoding the whole stream; codec and pixel format are ffmpeg's names,
    e.g. ``"h264"`` and ``"yuv420p"``.
    """
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        metadata = next(reader)
    finally:
        reader.close()
    frame_count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    width, height = metadata["size"]
    pix_fmt = metadata["pix_fmt"].split("(")[0].strip()
    return frame_count, width, height, metadata["codec"], pix_fmt


def top_level_atoms(path: Path | str) -> list[str]:
    """Types of the top-level boxes (atoms) of an MP4 file, in file order (e.g. ftyp, moov, mdat)."""
    data = Path(path).read_bytes()
    atoms, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        if size < 8:
            raise ValueError(f"{path}: malformed MP4 box {kind!r} of size {size} at offset {offset}")
        atoms.append(kind)
        offset += size
    return atoms
