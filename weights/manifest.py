"""The weights manifest: which files each stack needs, where they come from, their hashes and licences.

``weights/manifest.json`` holds ``{"version": 1, "stacks": {name: entry}}`` where an entry is::

    {"task": "texture", "repo": "org/name", "revision": "<40-hex commit>", "licence": "...",
     "description": "...", "files": [{"path": "unet/x.safetensors", "sha256": "<64-hex>", "size": 123}]}

Optional fields:

* ``"pinned": false`` marks a stack whose revision and hashes are not known yet: ``revision``, ``sha256`` and
  ``size`` may then be ``null``, and ``weights.download`` fetches it only with ``--unpinned`` (printing the
  hashes to pin). A pinned stack (the default) needs all three.
* a file's ``"url"``: fetch it from this HTTPS address instead of the hub repository.
* ``"convert": "module:function"`` run on the stack folder after download (e.g. an LDM checkpoint converted
  to a diffusers folder), and ``"installed": [paths]``, the files present after that conversion.

A stack is installed when every installed file (default: every listed file) exists under
``<weights_dir>/<name>/`` (tiny test stacks use the same layout with other sizes). Sizes and hashes are checked
when files are downloaded: hashing gigabytes at every cold start would cost minutes.
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
    sha256: str | None
    size: int | None
    url: str | None = None


@dataclass(frozen=True)
class Stack:
    name: str
    task: str
    repo: str
    revision: str | None
    licence: str
    description: str
    files: tuple[WeightFile, ...]
    pinned: bool = True
    convert: str | None = None
    installed: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Total size of the files whose size is known."""
        return sum(f.size or 0 for f in self.files)

    @property
    def installed_paths(self) -> tuple[str, ...]:
        """Files that must exist for the stack to count as installed."""
        return self.installed or tuple(f.path for f in self.files)


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
    pinned = entry.get("pinned", True)
    if not isinstance(pinned, bool):
        raise ValueError(f"manifest stack {name!r}: 'pinned' must be true or false")
    revision = entry["revision"]
    if not (revision is None and not pinned) and not _REVISION.match(str(revision)):
        raise ValueError(f"manifest stack {name!r}: revision must be a pinned 40-hex commit")
    files = []
    for item in entry["files"]:
        _check_inside(name, item["path"])
        sha256, size = item.get("sha256"), item.get("size")
        if not (sha256 is None and not pinned) and not _SHA256.match(str(sha256)):
            raise ValueError(f"manifest stack {name!r}: {item['path']} needs a sha256")
        if size is None and pinned:
            raise ValueError(f"manifest stack {name!r}: {item['path']} needs a size")
        files.append(WeightFile(item["path"], sha256, None if size is None else int(size), item.get("url")))
    if not files:
        raise ValueError(f"manifest stack {name!r}: lists no files")
    installed = tuple(entry.get("installed", ()))
    for path in installed:
        _check_inside(name, path)
    return Stack(
        name,
        entry["task"],
        entry["repo"],
        revision,
        entry["licence"],
        entry.get("description", ""),
        tuple(files),
        pinned,
        entry.get("convert"),
        installed,
    )


def _check_inside(name: str, path: str) -> None:
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"manifest stack {name!r}: file path {path!r} must stay inside the stack")


def missing_stacks(manifest: Manifest, names: tuple[str, ...], root: Path) -> list[str]:
    """The stacks among ``names`` that are not completely installed under ``root``."""
    missing = []
    for name in names:
        stack = manifest.get(name)
        if stack is None or not all((root / name / path).is_file() for path in stack.installed_paths):
            missing.append(name)
    return missing
