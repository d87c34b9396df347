"""Tiny random-initialised stacks in the official on-disk layouts: ``python -m weights.tiny OUT_DIR``.

Each task package registers a builder here ("module:function", called with the stack's target folder and a
seed) that writes its stack exactly as the official files are laid out, with tiny sizes. Tests and the demo
point ``WEIGHTS_DIR`` at the result, so they load through the same code path as the real weights.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from weights.manifest import load_manifest

# stack name -> "module:function"; each task issue adds the builders of its stacks.
TINY_BUILDERS: dict[str, str] = {
    "trellis-image-large": "predictors.image_to_3d.pipeline:build_tiny_trellis",
    "dinov2-with-registers-large": "predictors.image_to_3d.pipeline:build_tiny_dinov2",
    "mvdream-sd21": "predictors.text_to_multiview.tiny:build_tiny_mvdream",
    "sd21-base": "predictors.text_to_multiview.tiny:build_tiny_sd21_base",
    "u2net": "predictors.text_to_multiview.tiny:build_tiny_u2net",
    "sd15": "predictors.texture.tiny:build_tiny_sd15",
    "controlnet-sd15-depth": "predictors.texture.tiny:build_tiny_controlnet",
    "controlnet-sd15-normal": "predictors.texture.tiny:build_tiny_controlnet",
    "controlnet-sd15-canny": "predictors.texture.tiny:build_tiny_controlnet",
    "sdxl-base": "predictors.texture.tiny_sdxl:build_tiny_sdxl_base",
    "controlnet-sdxl-depth": "predictors.texture.tiny_sdxl:build_tiny_controlnet_sdxl",
    "controlnet-sdxl-canny": "predictors.texture.tiny_sdxl:build_tiny_controlnet_sdxl",
    "ip-adapter": "predictors.texture.tiny_ip_adapter:build_tiny_ip_adapter",
}


def build_tiny_stacks(out_dir: Path, names: list[str] | None = None, seed: int = 0) -> list[str]:
    """Write the named (default: all registered) tiny stacks into ``out_dir``; returns the names written."""
    manifest = load_manifest()
    selected = names or list(TINY_BUILDERS)
    unknown = [name for name in selected if name not in TINY_BUILDERS]
    if unknown:
        raise ValueError(
            f"no tiny builder for {', '.join(unknown)}; registered: {', '.join(TINY_BUILDERS) or 'none'}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in selected:
        module_name, function_name = TINY_BUILDERS[name].split(":")
        builder = getattr(importlib.import_module(module_name), function_name)
        builder(out_dir / name, seed)
        expected = manifest[name].installed_paths if name in manifest else ()
        absent = [path for path in expected if not (out_dir / name / path).is_file()]
        if absent:
            raise RuntimeError(f"tiny builder for {name} did not write {', '.join(absent)}")
    (out_dir / "tiny.json").write_text(json.dumps({"stacks": selected, "seed": seed}, indent=2))
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("stacks", nargs="*", help="stack names (default: every registered stack)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = build_tiny_stacks(args.out_dir, args.stacks, args.seed)
    print(f"tiny stacks in {args.out_dir}: {', '.join(written) or 'none registered yet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
