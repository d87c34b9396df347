"""TRELLIS image-large: image -> sparse structure -> structured latent -> coloured mesh -> textured Mesh.

Reads the official layout: ``<stack>/pipeline.json`` (``args.models`` maps each pipeline key to
``ckpts/<stem>``, plus the two sampler entries and ``slat_normalization``) and ``<stack>/ckpts/<stem>.json``
+ ``.safetensors`` (strict loading through ``predictors.image_to_3d.trellis.models.load_model``). The image
conditioner is DINOv2 ViT-L/14 with registers from a transformers-layout folder.

Order of random draws (as upstream): conditioning, then one CPU generator seeded with ``seed`` draws the
sparse-structure noise ``[1, 8, 16, 16, 16]`` and then the structured-latent noise ``[N, 8]``, so results do
not depend on the device's random number generator.

The decoder frame is z-up in [-0.5, 0.5]³; ``postprocess.py`` turns the result into this project's world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from predictors.runtime import StageTimer, log, timed_stage

MODEL_KEYS = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "slat_flow_model",
    "slat_decoder_mesh",
)


@dataclass(frozen=True)
class GenerationSettings:
    """Per-run options; None takes pipeline.json's value."""

    seed: int
    ss_steps: int | None = None
    ss_guidance: float | None = None
    slat_steps: int | None = None
    slat_guidance: float | None = None


class TrellisImageTo3D:
    """The loaded TRELLIS stack: conditioner, two flow models, the structure decoder and the mesh decoder.

    Models are loaded on the CPU in ``dtype``; they run on ``device`` (the placement policy moves them)."""

    def __init__(self, trellis_dir: Path, dinov2_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        from predictors.image_to_3d.trellis.conditioner import DinoV2Conditioner
        from predictors.image_to_3d.trellis.models import load_model

        trellis_dir = Path(trellis_dir)
        config_path = trellis_dir / "pipeline.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} is missing (expected the microsoft/TRELLIS-image-large layout)"
            )
        args = json.loads(config_path.read_text())["args"]
        missing = [key for key in MODEL_KEYS if key not in args.get("models", {})]
        if missing:
            raise ValueError(f"{config_path}: args.models lacks {', '.join(missing)}")
        self.device, self.dtype = device, dtype
        self.configs: dict[str, dict] = {}
        self.models: dict[str, torch.nn.Module] = {}
        for key in MODEL_KEYS:
            relative = Path(args["models"][key])
            ckpt_dir, stem = trellis_dir / relative.parent, relative.name
            self.configs[key] = json.loads((ckpt_dir / f"{stem}.json").read_text())["args"]
            self.models[key] = load_model(ckpt_dir, stem, "cpu", dtype)
        self.ss_sampler = args["sparse_structure_sampler"]
        self.slat_sampler = args["slat_sampler"]
        normalization = args["slat_normalization"]
        self.slat_mean = torch.tensor(normalization["mean"], dtype=torch.float32, device=device)
        self.slat_std = torch.tensor(normalization["std"], dtype=torch.float32, device=device)
        self.conditioner = DinoV2Conditioner.from_folder(dinov2_dir, "cpu", dtype)

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.conditioner.model, *self.models.values()]

    @torch.no_grad()
    def generate(self, image: Image.Image, settings: GenerationSettings, stage: StageTimer = timed_stage):
        """The decoder's coloured mesh (``flexicubes.ExtractedMesh``, decoder frame) for a prepared image."""
        from extensions.sparse import SparseTensor
        from predictors.image_to_3d.trellis.flexicubes import extract_mesh
        from predictors.image_to_3d.trellis.sampler import FlowSamplerSettings, sample_flow

        with stage("condition"):
            cond, neg_cond = self.conditioner.conditions([image])
            cond, neg_cond = cond.to(self.dtype), neg_cond.to(self.dtype)
        generator = torch.Generator().manual_seed(settings.seed)

        with stage("sparse_structure"):
            flow_args = self.configs["sparse_structure_flow_model"]
            resolution, channels = flow_args["resolution"], flow_args["in_channels"]
            noise = torch.randn(1, channels, resolution, resolution, resolution, generator=generator)
            ss_settings = FlowSamplerSettings.from_config(
                self.ss_sampler, steps=settings.ss_steps, cfg_strength=settings.ss_guidance
            )
            flow = self.models["sparse_structure_flow_model"]
            latent = sample_flow(flow, noise.to(self.device, self.dtype), cond, neg_cond, ss_settings)
            logits = self.models["sparse_structure_decoder"](latent)
            coords = torch.argwhere(logits > 0)[:, [0, 2, 3, 4]].int().contiguous()
            log(f"image-to-3d: sparse structure has {len(coords)} voxels")
            if len(coords) == 0:
                raise RuntimeError("the sparse structure is empty (no occupied voxel); try another seed")

        with stage("structured_latent"):
            slat_args = self.configs["slat_flow_model"]
            feats = torch.randn(len(coords), slat_args["in_channels"], generator=generator)
            noise = SparseTensor(feats.to(self.device, self.dtype), coords.to(self.device))
            slat_settings = FlowSamplerSettings.from_config(
                self.slat_sampler, steps=settings.slat_steps, cfg_strength=settings.slat_guidance
            )
            slat = sample_flow(self.models["slat_flow_model"], noise, cond, neg_cond, slat_settings)
            slat = slat.replace(slat.feats.float() * self.slat_std + self.slat_mean)

        with stage("decode_mesh"):
            decoder = self.models["slat_decoder_mesh"]
            decoded = decoder(slat.type(self.dtype))
            mesh_resolution = 4 * int(self.configs["slat_decoder_mesh"]["resolution"])
            mesh = extract_mesh(decoded.coords[:, 1:], decoded.feats.float(), mesh_resolution)
            log(f"image-to-3d: decoded mesh has {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
            if len(mesh.faces) == 0:
                raise RuntimeError("the decoded mesh is empty; try another seed")
        return mesh
