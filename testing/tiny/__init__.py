"""Tiny random-initialised stacks in the official on-disk layouts: ``python -m testing.tiny OUT_DIR [STACK ...]``.

Each builder writes one stack exactly as the official files are laid out, with tiny sizes, from a seed. Tests, the
demo and the benchmarks point ``WEIGHTS_DIR`` at the result, so they load through the same code as real weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from testing.tiny import ip_adapter, mvdream, sd15, sdxl, trellis, u2net
from weights.manifest import load_manifest

Builder = Callable[[Path, int], None]

# stack name (weights/manifest.json) -> builder(folder, seed)
TINY_BUILDERS: dict[str, Builder] = {
    "trellis-image-large": trellis.build_tiny_trellis,
    "dinov2-with-registers-large": trellis.build_tiny_dinov2,
    "mvdream-sd21": mvdream.build_tiny_mvdream,
    "sd21-base": mvdream.build_tiny_sd21_base,
    "u2net": u2net.build_tiny_u2net,
    "sd15": sd15.build_tiny_sd15,
    "controlnet-sd15-depth": sd15.build_tiny_controlnet,
    "controlnet-sd15-normal": sd15.build_tiny_controlnet,
    "controlnet-sd15-canny": sd15.build_tiny_controlnet,
    "sdxl-base": sdxl.build_tiny_sdxl_base,
    "controlnet-sdxl-depth": sdxl.build_tiny_controlnet_sdxl,
    "controlnet-sdxl-canny": sdxl.build_tiny_controlnet_sdxl,
    "ip-adapter": ip_adapter.build_tiny_ip_adapter,
}


def build_tiny_stacks(out_dir: Path, names: list[str] | None = None, seed: int = 0) -> list[str]:
    """Write the named (default: all) tiny stacks into ``out_dir``; returns the names written."""
    manifest = load_manifest()
    selected = names or list(TINY_BUILDERS)
    unknown = [name for name in selected if name not in TINY_BUILDERS]
    if unknown:
        raise ValueError(f"no tiny builder for {', '.join(unknown)}; registered: {', '.join(TINY_BUILDERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in selected:
        TINY_BUILDERS[name](out_dir / name, seed)
        expected = manifest[name].installed_paths if name in manifest else ()
        absent = [path for path in expected if not (out_dir / name / path).is_file()]
        if absent:
            raise RuntimeError(f"tiny builder for {name} did not write {', '.join(absent)}")
    (out_dir / "tiny.json").write_text(json.dumps({"stacks": selected, "seed": seed}, indent=2))
    return selected
