"""Download stacks listed in the manifest and verify their sha256: ``python -m weights.download <stack|all>``.

This is the only code that talks to a model hub. The predictor itself runs with the hubs set offline.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from weights.manifest import Manifest, Stack, WeightFile, load_manifest, weights_dir

Fetcher = Callable[[Stack, WeightFile, Path], Path]


def sha256_of(path: Path, chunk_bytes: int = 16 * 2**20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_from_hub(stack: Stack, file: WeightFile, cache_dir: Path) -> Path:
    """Fetch one file at the pinned revision with huggingface_hub; returns its local path."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(stack.repo, file.path, revision=stack.revision, cache_dir=cache_dir))


def install_stack(stack: Stack, root: Path, fetch: Fetcher = fetch_from_hub) -> None:
    """Fetch every file of ``stack`` into ``root/<stack>/``, verifying size and sha256 before moving it in place."""
    target_dir = root / stack.name
    staging = root / f".{stack.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    for file in stack.files:
        destination = target_dir / file.path
        if destination.is_file() and sha256_of(destination) == file.sha256:
            print(f"{stack.name}: {file.path} already verified", flush=True)
            continue
        fetched = fetch(stack, file, staging)
        size, digest = fetched.stat().st_size, sha256_of(fetched)
        if size != file.size or digest != file.sha256:
            raise ValueError(
                f"{stack.name}: {file.path} failed verification (size {size}, sha256 {digest}; "
                f"expected size {file.size}, sha256 {file.sha256})"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fetched, destination)
        print(f"{stack.name}: {file.path} verified ({size / 2**20:.1f} MiB)", flush=True)
    shutil.rmtree(staging, ignore_errors=True)


def select_stacks(manifest: Manifest, names: list[str]) -> list[Stack]:
    if names == ["all"]:
        return list(manifest.values())
    unknown = [name for name in names if name not in manifest]
    if unknown:
        known = ", ".join(manifest) or "none"
        raise ValueError(f"unknown stack(s) {', '.join(unknown)}; the manifest lists: {known}")
    return [manifest[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stacks", nargs="+", help="stack names from weights/manifest.json, or 'all'")
    parser.add_argument("--dest", type=Path, default=None, help="target folder (default: $WEIGHTS_DIR)")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    stacks = select_stacks(manifest, args.stacks)
    root = args.dest or weights_dir()
    for stack in stacks:
        print(
            f"{stack.name}: {stack.repo}@{stack.revision[:10]} ({stack.size / 2**30:.2f} GiB, {stack.licence})"
        )
        install_stack(stack, root)
    if not stacks:
        print("nothing to download: the manifest lists no stacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
