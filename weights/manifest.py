"""The weights manifest: which files each stack needs, where they come from, their hashes and licences.

``weights/manifest.json`` holds ``{"version": 1, "stacks": {name: entry}}`` where an entry is::

    {"task": "texture", "repo": "org/name", "revision": "<40-hex commit>", "licence": "...",
     "description": "...", "files": [{"path": "unet/x.safetensors", "sha256": "<64-hex>", "size": 123}]}

A stack is installed when every listed file exists under ``<weights_dir>/<name>/`` (tiny test stacks use the
same layout with other sizes). Sizes and hashes are checked when files are downloaded: hashing gigabytes at
every cold start would cost minutes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
DEFAULT_WEIGHTS_DIR = Path(__file__).with_name("stacks")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class WeightFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Stack:
    name: str
    task: str
    repo: str
    revision: str
    licence: str
    description: str
    files: tuple[WeightFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


Manifest = dict[str, Stack]


def weights_dir() -> Path:
    """The folder the predictor loads stacks from: ``WEIGHTS_DIR`` or ``weights/stacks``."""
    return Path(os.environ.get("WEIGHTS_DIR", DEFAULT_WEIGHTS_DIR))


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    """Parse and check the manifest; raises ValueError on a malformed entry."""
    document = json.loads(path.read_text())
    if document.get("version") != 1:
        raise ValueError(f"{path}: unsupported manifest version {document.get('version')!r}")
    return {name: _parse_stack(name, entry) for name, entry in document["stacks"].items()}


def _parse_stack(name: str, entry: dict) -> Stack:
    for key in ("task", "repo", "revision", "licence", "files"):
        if key not in entry:
            raise ValueError(f"manifest stack {name!r}: missing {key!r}")
    if not _REVISION.match(entry["revision"]):
        raise ValueError(f"manifest stack {name!r}: revision must be a pinned 40-hex commit")
    files = []
    for item in entry["files"]:
        relative = Path(item["path"])
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(
                f"manifest stack {name!r}: file path {item['path']!r} must stay inside the stack"
            )
        if not _SHA256.match(item.get("sha256", "")):
            raise ValueError(f"manifest stack {name!r}: {item['path']} needs a sha256")
        files.append(WeightFile(item["path"], item["sha256"], int(item["size"])))
    if not files:
        raise ValueError(f"manifest stack {name!r}: lists no files")
    return Stack(
        name,
        entry["task"],
        entry["repo"],
        entry["revision"],
        entry["licence"],
        entry.get("description", ""),
        tuple(files),
    )


def missing_stacks(manifest: Manifest, names: tuple[str, ...], root: Path) -> list[str]:
    """The stacks among ``names`` that are not completely installed under ``root``."""
    missing = []
    for name in names:
        stack = manifest.get(name)
        if stack is None or not all((root / name / f.path).is_file() for f in stack.files):
            missing.append(name)
    return missing
