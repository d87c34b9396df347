"""Fingerprints of output files: their exact bytes (sha256) and decoded summaries that survive the float noise
of another CPU (sizes, counts, bounds and 8x8 thumbnails of every image, texture and first video frame)."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import struct
from pathlib import Path

import numpy as np
from PIL import Image

THUMBNAIL = 8


def platform_signature() -> str:
    """CPU model, torch CPU capability and library versions: equal signatures should give equal bytes."""
    import torch

    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.machine()} | {model} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


def _thumbnail(image: Image.Image) -> list:
    rgba = image.convert("RGBA").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return np.asarray(rgba).astype(int).tolist()


def _glb(data: bytes) -> dict:
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + json_length])
    binary = data[20 + json_length + 8 :]
    accessors = document["accessors"]
    positions = [accessors[p["attributes"]["POSITION"]] for m in document["meshes"] for p in m["primitives"]]
    indices = [accessors[p["indices"]] for m in document["meshes"] for p in m["primitives"] if "indices" in p]
    images = []
    for image in document.get("images", []):
        view = document["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        images.append(_png(binary[start : start + view["byteLength"]]))
    return {
        "vertices": sum(a["count"] for a in positions),
        "indices": sum(a["count"] for a in indices),
        "min": np.min([a["min"] for a in positions], axis=0).round(4).tolist(),
        "max": np.max([a["max"] for a in positions], axis=0).round(4).tolist(),
        "images": images,
    }


def _png(data: bytes) -> dict:
    image = Image.open(io.BytesIO(data))
    return {"size": list(image.size), "mode": image.mode, "thumbnail": _thumbnail(image)}


def _mp4(path: Path) -> dict:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count, first = 0, None
    for frame in reader:
        if first is None:
            width, height = meta["size"]
            first = Image.frombytes("RGB", (width, height), frame)
        count += 1
    return {"size": list(meta["size"]), "frames": count, "first": _thumbnail(first)}


def _json(data: bytes) -> object:
    def rounded(value):
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    return rounded(json.loads(data))


def fingerprint(path: Path) -> dict:
    """sha256 and a decoded summary of one output file (PNG, GLB, MP4 or JSON)."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    summary = {
        ".png": lambda: _png(data),
        ".glb": lambda: _glb(data),
        ".mp4": lambda: _mp4(path),
        ".json": lambda: _json(data),
    }[suffix]()
    return {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "summary": summary}


def summary_differences(expected: object, actual: object, where: str = "") -> list[str]:
    """Where two summaries differ beyond what another CPU's float noise explains (empty: they agree).

    Sizes, modes and frame counts must be equal; vertex and index counts within 10%; bounds within 0.05;
    thumbnails within a mean absolute difference of 16 (of 255); JSON numbers within 1e-3.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return [f"{where}: keys {sorted(expected)} != {sorted(actual)}"]
        return [
            d for key in expected for d in _compare_key(key, expected[key], actual[key], f"{where}.{key}")
        ]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items != {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in summary_differences(e, a, f"{where}[{i}]")
        ]
    if isinstance(expected, float) or isinstance(actual, float):
        return [] if abs(float(expected) - float(actual)) <= 1e-3 else [f"{where}: {expected} != {actual}"]
    return [] if expected == actual else [f"{where}: {expected!r} != {actual!r}"]


def _compare_key(key: str, expected: object, actual: object, where: str) -> list[str]:
    if key in ("thumbnail", "first"):
        difference = float(np.abs(np.asarray(expected, float) - np.asarray(actual, float)).mean())
        return [] if difference <= 16 else [f"{where}: thumbnails differ by {difference:.1f} on average"]
    if key in ("vertices", "indices"):
        return (
            [] if abs(expected - actual) <= 0.1 * max(expected, 1) else [f"{where}: {expected} != {actual}"]
        )
    if key in ("min", "max"):
        difference = float(np.abs(np.asarray(expected) - np.asarray(actual)).max())
        return [] if difference <= 0.05 else [f"{where}: bounds differ by {difference:.3f}"]
    return summary_differences(expected, actual, where)
