"""image-to-3d: input preprocessing and the tiny TRELLIS pipeline end to end (in process)."""

import json

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from predictors.background import BackgroundRemover
from predictors.image_to_3d.trellis.inputs import TrellisInputs
from predictors.image_to_3d.trellis.preprocess import OUTPUT_SIZE, prepare_image
from predictors.inputs import parse_inputs
from predictors.outputs import MeshOutputs, write_outputs
from predictors.placement import Placement
from predictors.runtime import LoadEnv, RunContext
from tests.support.gltf_validation import validate_glb

PLAIN = BackgroundRemover(None)  # the plain-background rule (no U²-Net)


def _save(tmp_path, pixels: np.ndarray, name: str = "in.png"):
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def test_alpha_is_the_mask_and_the_crop_is_square_around_it(tmp_path):
    rgba = np.zeros((200, 300, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white but transparent background must turn black
    rgba[50:150, 100:160] = (0, 200, 0, 255)  # 100 rows x 60 columns, centred at (99.5, 129.5)
    prepared = prepare_image(_save(tmp_path, rgba), PLAIN)
    pixels = np.asarray(prepared.image).astype(int)
    assert prepared.mask_source == "alpha" and prepared.image.size == (OUTPUT_SIZE, OUTPUT_SIZE)
    green = (pixels[..., 1] > 100) & (pixels[..., 0] < 50)
    rows, columns = np.nonzero(green)
    # The object's longer side spans 1 / 1.2 of the crop, centred; the shorter side scales alike.
    assert abs((rows.max() - rows.min() + 1) / OUTPUT_SIZE - 1 / 1.2) < 0.02
    assert abs((columns.max() - columns.min() + 1) / OUTPUT_SIZE - 0.6 / 1.2) < 0.02
    # (within a source pixel: like upstream, the box side is 1.2 (max - min) of the inclusive bounds)
    assert abs(rows.mean() - OUTPUT_SIZE / 2) < 8 and abs(columns.mean() - OUTPUT_SIZE / 2) < 8
    assert pixels[5, 5].tolist() == [0, 0, 0] and pixels[~green].max() < 200


def test_plain_background_fallback_without_u2net(tmp_path, capsys):
    rgb = np.full((120, 120, 3), 255, dtype=np.uint8)
    rgb[40:80, 30:90] = (30, 40, 220)
    prepared = prepare_image(_save(tmp_path, rgb, "in.jpg"), PLAIN)
    assert prepared.mask_source == "plain-background colour" and "no u2net weights" in capsys.readouterr().out
    pixels = np.asarray(prepared.image).astype(int)
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert np.abs(pixels[OUTPUT_SIZE // 2, OUTPUT_SIZE // 2] - [30, 40, 220]).max() < 15
    kept = prepare_image(_save(tmp_path, rgb, "in.png"), PLAIN, remove_background=False)
    assert kept.mask_source == "none" and np.asarray(kept.image)[60, 60].tolist() == [
        255,
        255,
        255,
    ]  # kept white


def test_bad_images_raise_value_errors(tmp_path):
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="not an image"):
        prepare_image(not_image, PLAIN)
    with pytest.raises(ValueError, match="no foreground"):
        prepare_image(_save(tmp_path, np.zeros((64, 64, 4), dtype=np.uint8)), PLAIN)
    with pytest.raises(ValueError, match="at least 16"):
        prepare_image(_save(tmp_path, np.zeros((8, 8, 3), dtype=np.uint8)), PLAIN)
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="plain background"):
        prepare_image(_save(tmp_path, noisy), PLAIN)


@pytest.fixture(scope="module")
def runner(tiny_weights):
    from predictors.image_to_3d.trellis.task import load

    device = torch.device("cpu")
    env = LoadEnv(tiny_weights, device, Placement(device), PLAIN)
    runner = load(env)
    env.placement.settle()
    return runner


def _run(runner, tmp_path, name: str, seed: int) -> list:
    rgba = np.zeros((96, 96, 4), dtype=np.uint8)
    rgba[20:80, 30:70] = (220, 120, 40, 255)
    image = _save(tmp_path, rgba, "object.png")
    out = tmp_path / name
    out.mkdir()
    values = {"image": str(image), "ss_steps": 2, "slat_steps": 2, "face_count": 1000, "texture_size": 256}
    context = RunContext(out, torch.device("cpu"), seed)
    result = runner.generate(parse_inputs(TrellisInputs, values, "image-to-3d"), context)
    return write_outputs(result, MeshOutputs(video=False), out, device="cpu", stage=context.stage)


def test_tiny_pipeline_is_deterministic_and_valid(runner, tmp_path):
    first = _run(runner, tmp_path, "a", seed=5)
    assert [path.name for path in first] == ["model.glb", "preview.png", "input_processed.png"]
    again = _run(runner, tmp_path, "b", seed=5)
    other = _run(runner, tmp_path, "c", seed=6)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again, strict=True))
    assert first[0].read_bytes() != other[0].read_bytes()
    report = validate_glb(first[0])
    assert report["numErrors"] == 0, json.dumps(report, indent=2)
    scene = trimesh.load(first[0], force="scene")
    (geometry,) = scene.geometry.values()
    assert len(geometry.faces) <= 1100 and geometry.visual.material.baseColorTexture.size == (256, 256)


def test_tiny_pipeline_mesh_is_y_up_in_the_unit_cube(runner):
    from predictors.image_to_3d.trellis.pipeline import GenerationSettings
    from predictors.image_to_3d.trellis.postprocess import to_world_mesh

    image = Image.new("RGB", (OUTPUT_SIZE, OUTPUT_SIZE))
    fine = runner.pipeline.generate(image, GenerationSettings(seed=1, ss_steps=1, slat_steps=1))
    world = to_world_mesh(fine.vertices, fine.faces, fine.colors)
    decoder = fine.vertices.numpy()
    # (x, y, z) z-up -> (x, z, -y) y-up, doubled.
    assert np.allclose(
        world.vertices, 2.0 * np.stack([decoder[:, 0], decoder[:, 2], -decoder[:, 1]], 1), atol=1e-6
    )
    assert np.abs(world.vertices).max() <= 1.0 + 1e-6
    # The tiny decoder puts every active corner inside (sdf -0.25) with colour logits (1.5, -0.5, -1.5); the
    # surface crosses edges towards untouched corners (sdf 1, logits 0), so colours mix in that proportion.
    inside, outside = -0.25 - 1.0 / 64, 1.0 - 1.0 / 64
    weight_outside = inside / (inside - outside)
    colour = (1 - weight_outside) / (1.0 + np.exp(-np.array([1.5, -0.5, -1.5]))) + weight_outside * 0.5
    assert np.abs(world.vertex_colors.mean(axis=0) - 255.0 * colour).max() < 5
