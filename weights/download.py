"""Download stacks listed in the manifest and verify their sha256: ``python -m weights.download <stack|all>``.

This is the only code that talks to a model hub. The predictor itself runs with the hubs set offline.
Stacks marked ``"pinned": false`` (revision or hashes not recorded yet) are refused unless ``--unpinned`` is
given; their files are then checked against whatever hashes are known, and the measured sha256 and size are
printed so that they can be recorded. A stack with a ``convert`` hook is converted after its files arrive.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import sys
import urllib.request
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
    """Fetch one file (at the pinned revision, from its ``url`` if it has one); returns its local path."""
    if file.url is not None:
        if not file.url.startswith("https://"):
            raise ValueError(f"{stack.name}: {file.path} has a non-HTTPS url {file.url!r}")
        target = cache_dir / Path(file.path).name
        urllib.request.urlretrieve(file.url, target)
        return target
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(stack.repo, file.path, revision=stack.revision, cache_dir=cache_dir))


def install_stack(
    stack: Stack, root: Path, fetch: Fetcher = fetch_from_hub, allow_unpinned: bool = False
) -> None:
    """Fetch every file of ``stack`` into ``root/<stack>/``, verifying size and sha256 before moving it in place,
    then run the stack's ``convert`` hook if it has one.

    Raises:
        ValueError: the stack is unpinned and ``allow_unpinned`` is false, or a file fails verification.
    """
    if not stack.pinned and not allow_unpinned:
        raise ValueError(
            f"{stack.name} is not pinned (its revision or sha256 are not recorded in weights/manifest.json); "
            "pass --unpinned to download it anyway"
        )
    target_dir = root / stack.name
    if stack.convert and all((target_dir / path).is_file() for path in stack.installed_paths):
        print(f"{stack.name}: already installed and converted", flush=True)
        return
    staging = root / f".{stack.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    for file in stack.files:
        destination = target_dir / file.path
        if file.sha256 is not None and destination.is_file() and sha256_of(destination) == file.sha256:
            print(f"{stack.name}: {file.path} already verified", flush=True)
            continue
        fetched = fetch(stack, file, staging)
        size, digest = fetched.stat().st_size, sha256_of(fetched)
        if (file.size is not None and size != file.size) or (
            file.sha256 is not None and digest != file.sha256
        ):
            raise ValueError(
                f"{stack.name}: {file.path} failed verification (size {size}, sha256 {digest}; "
                f"expected size {file.size}, sha256 {file.sha256})"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fetched, destination)
        state = "verified" if file.sha256 is not None else f"UNPINNED: sha256 {digest}, size {size}"
        print(f"{stack.name}: {file.path} {state} ({size / 2**20:.1f} MiB)", flush=True)
    shutil.rmtree(staging, ignore_errors=True)
    if stack.convert:
        module_name, function_name = stack.convert.split(":")
        print(f"{stack.name}: converting with {stack.convert}", flush=True)
        getattr(importlib.import_module(module_name), function_name)(target_dir)


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
    parser.add_argument(
        "--unpinned", action="store_true", help="also download stacks whose revision/sha256 are not recorded"
    )
    args = parser.parse_args(argv)
    manifest = load_manifest()
    stacks = select_stacks(manifest, args.stacks)
    unpinned = [stack.name for stack in stacks if not stack.pinned]
    if unpinned and not args.unpinned:
        print(
            f"refusing unpinned stack(s) {', '.join(unpinned)}: their revision or sha256 are not recorded; "
            "pass --unpinned to download them anyway",
            file=sys.stderr,
        )
        return 2
    root = args.dest or weights_dir()
    for stack in stacks:
        revision = stack.revision[:10] if stack.revision else "default branch, UNPINNED"
        print(f"{stack.name}: {stack.repo}@{revision} ({stack.size / 2**30:.2f} GiB known, {stack.licence})")
        install_stack(stack, root, allow_unpinned=args.unpinned)
    if not stacks:
        print("nothing to download: the manifest lists no stacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
