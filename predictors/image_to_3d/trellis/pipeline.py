"""TRELLIS image-large: image -> sparse structure -> structured latent -> coloured mesh -> textured Mesh.

Reads the official layout: ``<stack>/pipeline.json`` (``args.models`` maps each pipeline key to
``ckpts/<stem>``, plus the two sampler entries and ``slat_normalization``) and ``<stack>/ckpts/<stem>.json``
+ ``.safetensors`` (strict loading through ``predictors.image_to_3d.trellis.models.load_model``). The image
conditioner is DINOv2 ViT-L/14 with registers from a transformers-layout folder.

Order of random draws (as upstream): conditioning, then one CPU generator seeded with ``seed`` draws the
sparse-structure noise ``[1, 8, 16, 16, 16]`` and then the structured-latent noise ``[N, 8]``, so results do
not depend on the device's random number generator.

The decoder frame is z-up in [-0.5, 0.5]³; the result is rotated to y-up (``(x, y, z) -> (x, z, -y)``, as
upstream's GLB export) and scaled by 2 to fill [-1, 1]³ (this project's world convention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from predictors.geometry.bake import fill_unseen
from predictors.geometry.mesh import Mesh
from predictors.runtime import log

MODEL_KEYS = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "slat_flow_model",
    "slat_decoder_mesh",
)
# Upstream's GLB rotation from the decoder's z-up frame to y-up, applied to row vectors.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
WORLD_SCALE = 2.0
NEAREST_CHUNK = 1 << 20  # texels per nearest-vertex query

Stage = Callable[[str], AbstractContextManager[None]]


@dataclass(frozen=True)
class GenerationSettings:
    """Per-run options; None takes pipeline.json's value."""

    seed: int
    ss_steps: int | None = None
    ss_guidance: float | None = None
    slat_steps: int | None = None
    slat_guidance: float | None = None


def _no_stage(name: str) -> AbstractContextManager[None]:
    del name
    return nullcontext()


class TrellisImageTo3D:
    """The loaded TRELLIS stack: conditioner, two flow models, the structure decoder and the mesh decoder."""

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
            self.models[key] = load_model(ckpt_dir, stem, device, dtype)
        self.ss_sampler = args["sparse_structure_sampler"]
        self.slat_sampler = args["slat_sampler"]
        normalization = args["slat_normalization"]
        self.slat_mean = torch.tensor(normalization["mean"], dtype=torch.float32, device=device)
        self.slat_std = torch.tensor(normalization["std"], dtype=torch.float32, device=device)
        self.conditioner = DinoV2Conditioner.from_folder(dinov2_dir, device, dtype)

    @torch.no_grad()
    def generate(self, image: Image.Image, settings: GenerationSettings, stage: Stage = _no_stage):
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


def to_world_mesh(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> Mesh:
    """Decoder-frame mesh (z-up, [-0.5, 0.5]³, colours in [0, 1]) -> y-up Mesh in [-1, 1]³ with vertex colours."""
    positions = vertices.detach().cpu().double().numpy() @ Z_UP_TO_Y_UP * WORLD_SCALE
    rgb = np.round(np.clip(colors[:, :3].detach().cpu().numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Mesh(vertices=positions, faces=faces.detach().cpu().numpy(), vertex_colors=rgb)


def bake_vertex_colours(target: Mesh, source: Mesh, texture_size: int) -> np.ndarray:
    """Texture uint8 [T, T, 3] for ``target`` (with UVs): each texel takes the colour of the nearest vertex of
    the finely tessellated, vertex-coloured ``source``; gutters take the nearest covered texel's colour."""
    from scipy.spatial import cKDTree

    from predictors.geometry.render import rasterize_uv_space

    passes = rasterize_uv_space(target, texture_size)
    covered = passes.mask.numpy()
    points = passes.positions.numpy()[covered]
    tree = cKDTree(source.vertices)
    nearest = np.concatenate(
        [
            tree.query(points[start : start + NEAREST_CHUNK])[1]
            for start in range(0, len(points), NEAREST_CHUNK)
        ]
    )
    texture = np.zeros((texture_size, texture_size, 3), dtype=np.uint8)
    texture[covered] = source.vertex_colors[nearest]
    return fill_unseen(texture, covered)
