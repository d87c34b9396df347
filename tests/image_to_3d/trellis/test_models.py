"""TRELLIS image-large models: official key/shape manifest, strict loading, and oracles for the pieces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from extensions.sparse import SparseTensor
from predictors.image_to_3d.trellis.models import MODEL_CLASSES, build_model, load_model
from predictors.image_to_3d.trellis.models.attention import MultiHeadAttention
from predictors.image_to_3d.trellis.models.dense_blocks import ModulatedTransformerCrossBlock
from predictors.image_to_3d.trellis.models.layers import (
    MultiHeadRMSNorm,
    TimestepEmbedder,
    absolute_position_embedding,
    patchify,
    pixel_shuffle_3d,
    unpatchify,
)
from predictors.image_to_3d.trellis.models.sparse_blocks import ModulatedSparseTransformerCrossBlock

# Expected names, shapes and stored dtypes: microsoft/TRELLIS's own classes built on the meta device with the
# published configs (see the fixture's "source").
MANIFEST = json.loads((Path(__file__).parent / "fixtures" / "trellis_keys.json").read_text())["models"]

TINY_SS_FLOW = {
    "resolution": 4,
    "in_channels": 8,
    "out_channels": 8,
    "model_channels": 64,
    "cond_channels": 32,
    "num_blocks": 2,
    "num_heads": 2,
    "patch_size": 2,
    "pe_mode": "ape",
    "qk_rms_norm": True,
    "use_fp16": True,
}
TINY_SLAT_FLOW = {
    "resolution": 8,
    "in_channels": 8,
    "out_channels": 8,
    "model_channels": 64,
    "cond_channels": 32,
    "num_blocks": 1,
    "num_heads": 2,
    "patch_size": 2,
    "num_io_res_blocks": 2,
    "io_block_channels": [16],
    "pe_mode": "ape",
    "qk_rms_norm": True,
}
TINY_MESH_DECODER = {
    "resolution": 8,
    "model_channels": 256,
    "latent_channels": 8,
    "num_blocks": 2,
    "num_heads": 4,
    "attn_mode": "swin",
    "window_size": 4,
    "representation_config": {"use_color": True},
}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def random_coords(batch: int, resolution: int, count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch):
        cells = torch.randperm(resolution**3, generator=generator)[:count].sort().values
        xyz = torch.stack([cells // resolution**2, cells // resolution % resolution, cells % resolution], 1)
        rows.append(torch.cat([torch.full((count, 1), b), xyz], 1))
    return torch.cat(rows).int()


@pytest.mark.parametrize("stem", sorted(MANIFEST))
def test_full_size_models_have_the_official_keys_and_shapes(stem: str) -> None:
    entry = MANIFEST[stem]
    model = build_model(entry["name"], entry["args"], device="meta")
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    expected = {key: shape for key, (shape, _dtype) in entry["tensors"].items()}
    assert sorted(set(expected) - set(ours)) == [], "missing"
    assert sorted(set(ours) - set(expected)) == [], "unexpected"
    assert {key: shape for key, shape in ours.items() if expected[key] != shape} == {}


def test_registry_names_the_official_classes() -> None:
    assert {entry["name"] for entry in MANIFEST.values()} <= set(MODEL_CLASSES)
    with pytest.raises(ValueError, match="unknown TRELLIS model class"):
        build_model("SLatGaussianDecoder", {})


def write_checkpoint(folder: Path, stem: str, name: str, args: dict, state: dict[str, torch.Tensor]) -> None:
    (folder / f"{stem}.json").write_text(json.dumps({"name": name, "args": args}))
    save_file({key: value.contiguous() for key, value in state.items()}, str(folder / f"{stem}.safetensors"))


def test_load_model_is_strict_and_casts_mixed_precision(tmp_path: Path) -> None:
    source = randomize(build_model("SparseStructureFlowModel", TINY_SS_FLOW))
    # Store the torso in fp16 like the official files; everything must come back as float32.
    state = {
        key: value.half() if key.startswith("blocks.") else value
        for key, value in source.state_dict().items()
    }
    write_checkpoint(tmp_path, "ss", "SparseStructureFlowModel", TINY_SS_FLOW, state)
    loaded = load_model(tmp_path, "ss")
    assert not loaded.training
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, state[key].float()), key

    renamed = dict(state)
    renamed["blocks.0.self_attn.to_qkv.weight_renamed"] = renamed.pop("blocks.0.self_attn.to_qkv.weight")
    write_checkpoint(tmp_path, "bad", "SparseStructureFlowModel", TINY_SS_FLOW, renamed)
    with pytest.raises(
        ValueError, match=r"missing keys \(1\): blocks\.0\.self_attn\.to_qkv\.weight"
    ) as error:
        load_model(tmp_path, "bad")
    assert "unexpected keys (1): blocks.0.self_attn.to_qkv.weight_renamed" in str(error.value)

    reshaped = dict(state)
    reshaped["out_layer.bias"] = torch.zeros(3)
    write_checkpoint(tmp_path, "shape", "SparseStructureFlowModel", TINY_SS_FLOW, reshaped)
    with pytest.raises(ValueError, match=r"wrong shapes \(1\): out_layer\.bias \[3\]"):
        load_model(tmp_path, "shape")
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        load_model(tmp_path, "absent")


def test_position_embedding_matches_hand_computed_values() -> None:
    # 12 channels over 3 axes: 2 frequencies per axis, 1 and 1/100; layout [sin f, cos f] per axis.
    embedding = absolute_position_embedding(torch.tensor([[1, 2, 3]]), 12)[0]
    expected = []
    for x in (1.0, 2.0, 3.0):
        expected += [math.sin(x), math.sin(x / 100), math.cos(x), math.cos(x / 100)]
    assert torch.allclose(embedding, torch.tensor(expected), atol=1e-6)
    padded = absolute_position_embedding(torch.tensor([[5, 6, 7]]), 1024)[0]
    assert padded.shape == (1024,) and torch.all(padded[1020:] == 0) and torch.all(padded[:1020] != 0)


def test_timestep_embedding_is_cos_then_sin() -> None:
    features = TimestepEmbedder.sinusoid(torch.tensor([2.0]), 4)[0]
    expected = [math.cos(2.0), math.cos(0.02), math.sin(2.0), math.sin(0.02)]
    assert torch.allclose(features, torch.tensor(expected), atol=1e-6)


def test_pixel_shuffle_and_patchify_place_channels_at_offsets() -> None:
    x = torch.randn(2, 3 * 8, 2, 3, 4)
    shuffled = pixel_shuffle_3d(x, 2)
    for i, j, k in [(0, 0, 0), (1, 0, 1), (0, 1, 1), (1, 1, 0)]:
        channels = [c * 8 + i * 4 + j * 2 + k for c in range(3)]
        assert torch.equal(shuffled[:, :, i::2, j::2, k::2], x[:, channels])
    volume = torch.randn(1, 5, 4, 6, 2)
    assert torch.equal(unpatchify(patchify(volume, 2), 2), volume)
    assert torch.equal(patchify(volume, 2), pixel_shuffle_3d_inverse(volume))


def pixel_shuffle_3d_inverse(volume: torch.Tensor) -> torch.Tensor:
    """Independent gather: channel c*8 + i*4 + j*2 + k of the patch grid holds offset (i, j, k)."""
    b, c, x, y, z = volume.shape
    out = torch.empty(b, c * 8, x // 2, y // 2, z // 2)
    for channel in range(c):
        for i in range(2):
            for j in range(2):
                for k in range(2):
                    out[:, channel * 8 + i * 4 + j * 2 + k] = volume[:, channel, i::2, j::2, k::2]
    return out


def test_self_attention_with_rms_norm_matches_naive_softmax() -> None:
    torch.manual_seed(0)
    attention = randomize(MultiHeadAttention(32, 2, qk_rms_norm=True))
    x = torch.randn(2, 7, 32)
    qkv = attention.to_qkv(x).reshape(2, 7, 3, 2, 16)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q = q / q.norm(dim=-1, keepdim=True) * attention.q_rms_norm.gamma * 4.0
    k = k / k.norm(dim=-1, keepdim=True) * attention.k_rms_norm.gamma * 4.0
    weights = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / 4.0, dim=-1)
    expected = attention.to_out(torch.einsum("bhlm,bmhd->blhd", weights, v).reshape(2, 7, 32))
    assert torch.allclose(attention(x), expected, atol=1e-5)


def test_rms_norm_scales_unit_vectors_by_gamma() -> None:
    norm = MultiHeadRMSNorm(16, 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.full((2, 16), 0.5))
    out = norm(torch.randn(3, 5, 2, 16))
    assert torch.allclose(out.norm(dim=-1), torch.full((3, 5, 2), 0.5 * 4.0), atol=1e-5)


def test_sparse_cross_block_equals_the_dense_block_per_sample() -> None:
    dense = randomize(ModulatedTransformerCrossBlock(64, 32, num_heads=2, qk_rms_norm=True))
    sparse = ModulatedSparseTransformerCrossBlock(64, 32, num_heads=2, qk_rms_norm=True).eval()
    sparse.load_state_dict(dense.state_dict(), strict=True)
    coords = torch.cat([random_coords(1, 6, 9, seed=1), random_coords(1, 6, 14, seed=2)])
    coords[9:, 0] = 1
    feats, mod, context = torch.randn(23, 64), torch.randn(2, 64), torch.randn(2, 5, 32)
    with torch.no_grad():
        out = sparse(SparseTensor(feats, coords), mod, context).feats
        first = dense(feats[None, :9], mod[:1], context[:1])[0]
        second = dense(feats[None, 9:], mod[1:], context[1:])[0]
    assert torch.allclose(out, torch.cat([first, second]), atol=1e-5)


def test_slat_flow_treats_batch_elements_independently() -> None:
    model = randomize(build_model("SLatFlowModel", TINY_SLAT_FLOW), seed=3)
    first, second = random_coords(1, 8, 40, seed=4), random_coords(1, 8, 25, seed=5)
    second[:, 0] = 1
    coords = torch.cat([first, second])
    feats, t, cond = torch.randn(65, 8), torch.tensor([900.0, 120.0]), torch.randn(2, 6, 32)
    with torch.no_grad():
        both = model(SparseTensor(feats, coords), t, cond)
        alone = model(SparseTensor(feats[40:], second - torch.tensor([1, 0, 0, 0])), t[1:], cond[1:])
    assert torch.equal(both.coords, coords)
    assert torch.allclose(both.feats[40:], alone.feats, atol=1e-5)


def test_mesh_decoder_subdivides_twice_into_101_channels() -> None:
    model = randomize(build_model("SLatMeshDecoder", TINY_MESH_DECODER), seed=6)
    coords = random_coords(1, 8, 12, seed=7)
    with torch.no_grad():
        out = model(SparseTensor(torch.randn(12, 8), coords))
    assert out.feats.shape == (12 * 64, 101)
    parents = torch.unique(torch.cat([out.coords[:, :1], out.coords[:, 1:] // 4], 1), dim=0)
    assert torch.equal(parents, torch.unique(coords, dim=0))


def test_ss_flow_and_decoder_shapes() -> None:
    flow = randomize(build_model("SparseStructureFlowModel", TINY_SS_FLOW), seed=8)
    x = torch.randn(1, 8, 4, 4, 4)
    with torch.no_grad():
        out = flow(x, torch.tensor([500.0]), torch.randn(1, 3, 32))
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="expected input of shape"):
        flow(torch.randn(1, 8, 8, 8, 8), torch.tensor([1.0]), torch.randn(1, 3, 32))
    decoder_args = {"out_channels": 1, "latent_channels": 8, "num_res_blocks": 1, "channels": [32, 16, 8]}
    decoder = randomize(build_model("SparseStructureDecoder", decoder_args), seed=9)
    with torch.no_grad():
        logits = decoder(torch.randn(1, 8, 4, 4, 4))
    assert logits.shape == (1, 1, 16, 16, 16)
