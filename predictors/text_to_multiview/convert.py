"""Convert MVDream's ``sd-v2.1-base-4view.pt`` (LDM layout) into the ``mvdream-sd21`` diffusers folder.

``python -m predictors.text_to_multiview.convert CHECKPOINT OUT_DIR`` writes ``OUT_DIR/unet/{config.json,
diffusion_pytorch_model.safetensors}`` and ``OUT_DIR/scheduler/scheduler_config.json``.

The UNet keys (``model.diffusion_model.*``) are SD2.1's plus the camera embedding ``camera_embed.{0,2}``.
That embedding is renamed to the slot LDM uses for an ADM class embedding (``label_emb.0.{0,2}``), which
diffusers' own LDM converter maps to ``class_embedding.linear_{1,2}`` when the config has
``class_embed_type="projection"``. The result is checked against the model built on the meta device (no
memory, no real file needed): the conversion fails unless there are 0 missing keys, 0 unexpected keys, no
shape mismatch and no unused checkpoint tensor. VAE and text encoder come from SD2.1-base (stack ``sd21-base``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from predictors.text_to_multiview.unet import MVDREAM_UNET_CONFIG, build_unet, write_stack

CHECKPOINT_NAME = "sd-v2.1-base-4view.pt"
UNET_PREFIX = "model.diffusion_model."
CAMERA_RENAMES = {
    f"{UNET_PREFIX}camera_embed.{layer}.{kind}": f"{UNET_PREFIX}label_emb.0.{layer}.{kind}"
    for layer in (0, 2)
    for kind in ("weight", "bias")
}


@dataclass(frozen=True)
class KeyReport:
    """How a converted state dict matches the diffusers model."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    unused: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.unused)

    def summary(self) -> str:
        return (
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} "
            f"shape mismatches, {len(self.unused)} unused checkpoint tensors"
        )


def convert_unet(
    checkpoint: dict[str, torch.Tensor], config: dict[str, Any] = MVDREAM_UNET_CONFIG
) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """Diffusers UNet state dict from an LDM-layout MVDream checkpoint, and its key report against ``config``."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet_source = {key: value for key, value in checkpoint.items() if key.startswith(UNET_PREFIX)}
    if not unet_source:
        raise ValueError(f"the checkpoint has no UNet tensors (keys starting with {UNET_PREFIX!r})")
    absent = [key for key in CAMERA_RENAMES if key not in unet_source]
    if absent:
        raise ValueError(f"not an MVDream checkpoint: no camera embedding ({', '.join(absent)})")
    renamed = {CAMERA_RENAMES.get(key, key): value for key, value in unet_source.items()}
    converted = convert_ldm_unet_checkpoint(renamed, dict(config))
    used = {id(value) for value in converted.values()}
    unused = sorted(key for key, value in unet_source.items() if id(value) not in used)
    return converted, _compare_with_model(converted, config, unused)


def _compare_with_model(
    state: dict[str, torch.Tensor], config: dict[str, Any], unused: list[str]
) -> KeyReport:
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in build_unet(config).state_dict().items()}
    return KeyReport(
        missing=sorted(set(expected) - set(state)),
        unexpected=sorted(set(state) - set(expected)),
        mismatched=sorted(
            key for key in set(expected) & set(state) if tuple(state[key].shape) != expected[key]
        ),
        unused=unused,
    )


def convert_file(
    checkpoint_path: Path, out_dir: Path, config: dict[str, Any] = MVDREAM_UNET_CONFIG
) -> KeyReport:
    """Convert an ``sd-v2.1-base-4view.pt`` file into ``out_dir``; raises ValueError unless every key matches."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", mmap=True, weights_only=True)
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        checkpoint = checkpoint["state_dict"]
    unet_state, report = convert_unet(checkpoint, config)
    print(f"unet: {len(unet_state)} tensors; against the model: {report.summary()}", flush=True)
    if not report.ok:
        listed = report.missing[:5] + report.unexpected[:5] + report.mismatched[:5] + report.unused[:5]
        raise ValueError(f"conversion does not match the UNet ({report.summary()}), e.g. {listed}")
    write_stack(unet_state, out_dir, config)
    return report


def convert_stack(stack_dir: Path) -> None:
    """Download hook of the ``mvdream-sd21`` stack: convert the fetched checkpoint in place, then delete it."""
    checkpoint_path = stack_dir / CHECKPOINT_NAME
    convert_file(checkpoint_path, stack_dir)
    checkpoint_path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help=f"path of {CHECKPOINT_NAME}")
    parser.add_argument("out_dir", type=Path, help="stack folder to write (e.g. $WEIGHTS_DIR/mvdream-sd21)")
    args = parser.parse_args(argv)
    convert_file(args.checkpoint, args.out_dir)
    print(f"wrote {args.out_dir}/unet and {args.out_dir}/scheduler")
    return 0


if __name__ == "__main__":
    sys.exit(main())
