"""The ``image-to-3d`` task: one image -> textured GLB, turntable MP4, preview PNG (TRELLIS image-large)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from predictors.geometry.export import export_glb
from predictors.geometry.preview import write_preview_png
from predictors.geometry.uv import decimate, unwrap_uv
from predictors.geometry.video import render_turntable
from predictors.image_to_3d.trellis.pipeline import (
    GenerationSettings,
    TrellisImageTo3D,
    bake_vertex_colours,
    to_world_mesh,
)
from predictors.image_to_3d.trellis.preprocess import prepare_image
from predictors.runtime import RunContext, compute_dtype, log, peak_memory_mb

TRELLIS_STACK = "trellis-image-large"
DINOV2_STACK = "dinov2-with-registers-large"
U2NET_STACK = "u2net"
U2NET_FILE = "u2net.onnx"
STACKS = (TRELLIS_STACK, DINOV2_STACK)

# Defaults of the official demo (app.py): 12 steps per stage, guidance 7.5 (structure) and 3.0 (latent).
DEFAULTS = {
    "ss_steps": 12,
    "ss_guidance": 7.5,
    "slat_steps": 12,
    "slat_guidance": 3.0,
    "remove_background": True,
    "face_count": 20_000,
    "texture_size": 1024,
    "video": True,
}


class ImageTo3D:
    """Runs the loaded TRELLIS stack and post-processes its mesh into the output files."""

    def __init__(self, pipeline: TrellisImageTo3D, u2net_path: Path, device: torch.device) -> None:
        self.pipeline = pipeline
        self.u2net_path = u2net_path
        self.device = device

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]:
        options = {
            key: default if inputs.get(key) is None else inputs[key] for key, default in DEFAULTS.items()
        }
        with context.stage("preprocess"):
            prepared = prepare_image(
                inputs["image"], remove_background=options["remove_background"], u2net_path=self.u2net_path
            )
            log(f"image-to-3d: mask from {prepared.mask_source}")
            processed = context.output_path("input_processed.png")
            prepared.image.save(processed, format="PNG")
        settings = GenerationSettings(
            seed=context.seed,
            ss_steps=options["ss_steps"],
            ss_guidance=options["ss_guidance"],
            slat_steps=options["slat_steps"],
            slat_guidance=options["slat_guidance"],
        )
        fine = self.pipeline.generate(prepared.image, settings, context.stage)
        _log_memory(self.device, "generation")
        with context.stage("texture"):
            coloured = to_world_mesh(fine.vertices, fine.faces, fine.colors)
            del fine
            simplified = unwrap_uv(decimate(coloured, options["face_count"]), max_faces=options["face_count"])
            texture = bake_vertex_colours(simplified, coloured, options["texture_size"])
            mesh = simplified.copy_with(texture=texture, vertex_colors=None)
        context.record_metric("mesh.faces", int(mesh.faces.shape[0]))
        with context.stage("export_glb"):
            outputs = [export_glb(mesh, context.output_path("model.glb"))]
        if options["video"]:
            with context.stage("turntable"):
                outputs.append(
                    render_turntable(mesh, context.output_path("turntable.mp4"), device=str(self.device))
                )
        with context.stage("preview"):
            outputs.append(
                write_preview_png(mesh, context.output_path("preview.png"), device=str(self.device))
            )
        _log_memory(self.device, "run")
        return [*outputs, processed]


def _log_memory(device: torch.device, when: str) -> None:
    usage = ", ".join(f"{key} {value:.0f}" for key, value in peak_memory_mb(device).items())
    log(f"image-to-3d: peak memory after {when}: {usage}")


def load(weights_dir: Path, device: torch.device) -> ImageTo3D:
    """Task loader used by the engine: the TRELLIS and DINOv2 stacks (u2net is optional)."""
    pipeline = TrellisImageTo3D(
        Path(weights_dir) / TRELLIS_STACK, Path(weights_dir) / DINOV2_STACK, device, compute_dtype(device)
    )
    return ImageTo3D(pipeline, Path(weights_dir) / U2NET_STACK / U2NET_FILE, device)
