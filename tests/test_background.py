"""The shared background remover: U²-Net's pre- and post-processing (ONNX stand-ins) and the colour fallback."""

import numpy as np
import pytest
from PIL import Image

from predictors.background import BackgroundRemover
from testing.tiny.u2net import write_onnx_matte


def _square_on_white(size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    image = np.ones((size, size, 3), np.float32)
    mask = np.zeros((size, size), bool)
    mask[30:70, 25:65] = True
    image[mask] = (0.1, 0.2, 0.3)
    return image, mask


def test_plain_background_fallback_finds_the_object():
    image, mask = _square_on_white()
    remover = BackgroundRemover(None)
    assert remover.method == "plain-background colour"
    np.testing.assert_array_equal(remover.alpha(image, "view 0") == 255, mask)
    as_picture = Image.fromarray(np.round(image[::-1] * 255).astype(np.uint8))
    np.testing.assert_array_equal(remover.alpha(as_picture, "view 1") == 255, mask[::-1])
    noisy = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="view 2 has no alpha channel"):
        remover.alpha(noisy, "view 2")


def test_u2net_path_pre_and_post_processing(tmp_path):
    """An ONNX stand-in for U^2-Net that scores dark pixels as foreground: the matte must follow the object
    through the resize to 320, the normalisation, the min-max scaling and the resize back."""
    path = tmp_path / "u2net.onnx"
    write_onnx_matte(path, np.zeros((320, 320), np.float32), input_weights=[-1.0, -1.0, -1.0])
    image, mask = _square_on_white()
    remover = BackgroundRemover(path)
    assert remover.method == "u2net"
    alpha = remover.alpha(image, "view")
    assert alpha.shape == mask.shape and alpha.dtype == np.uint8
    wrong = (alpha > 127) != mask
    assert wrong.sum() <= 2 * (40 + 40)  # at most a one-pixel band along the square's outline
    assert alpha[mask].mean() > 0.9 * 255 and alpha[~mask].mean() < 0.1 * 255


def test_u2net_output_is_min_max_normalised_and_resized_back(tmp_path):
    logits = np.full((320, 320), -1.4, np.float32)  # sigmoid 0.2 outside, 0.9 inside
    logits[80:240, 80:240] = 2.2
    path = tmp_path / "u2net.onnx"
    write_onnx_matte(path, logits)
    assert BackgroundRemover.from_weights(tmp_path / "no-weights").method == "plain-background colour"
    alpha = BackgroundRemover(path).alpha(Image.new("RGB", (640, 480), (10, 20, 30)), "image")
    assert alpha.shape == (480, 640) and alpha.dtype == np.uint8
    assert alpha[240, 320] == 255 and alpha[10, 10] == 0
