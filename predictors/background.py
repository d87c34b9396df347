"""Background removal shared by every task: U²-Net when its stack is installed, else the plain-background rule.

With ``<weights>/u2net/u2net.onnx`` (rembg's U²-Net salient-object model) one onnxruntime session is opened at
setup (CUDA provider first when available) and each image goes through rembg's pre- and post-processing: resize to
320 x 320 (Lanczos), divide by the image maximum, normalise with the ImageNet mean and standard deviation (in
float64, as rembg), take the first output, min-max normalise it, quantise to 8 bits and resize back (Lanczos).
Without it, the background is separated by colour (:func:`predictors.geometry.masks.background_mask`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from predictors.geometry.masks import background_mask

U2NET_STACK = "u2net"
U2NET_FILE = "u2net.onnx"
U2NET_SIZE = 320
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackgroundRemover:
    """Alpha mattes of objects on a background; ``method`` says which model makes them."""

    def __init__(self, model_path: Path | None) -> None:
        self._session = None
        if model_path is not None and model_path.is_file():
            import onnxruntime

            providers = [
                provider
                for provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
                if provider in onnxruntime.get_available_providers()
            ]
            self._session = onnxruntime.InferenceSession(str(model_path), providers=providers)

    @classmethod
    def from_weights(cls, weights_dir: Path) -> BackgroundRemover:
        """The remover for an installed weights folder (U²-Net when the ``u2net`` stack is there)."""
        return cls(Path(weights_dir) / U2NET_STACK / U2NET_FILE)

    @property
    def method(self) -> str:
        return "u2net" if self._session is not None else "plain-background colour"

    def alpha(self, image: Image.Image | np.ndarray, name: str) -> np.ndarray:
        """Alpha uint8 [H, W] (255 = object) of an RGB image (PIL, or float [H, W, 3] in [0, 1]); ``name`` names
        the image in errors."""
        if self._session is None:
            rgb = (
                image
                if isinstance(image, np.ndarray)
                else np.asarray(image.convert("RGB"), np.float32) / 255.0
            )
            return background_mask(rgb, name=name).astype(np.uint8) * 255
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")
        small = np.asarray(
            image.convert("RGB").resize((U2NET_SIZE, U2NET_SIZE), Image.LANCZOS), dtype=np.float32
        )
        small = (small / max(float(small.max()), 1e-6) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        batch = small.transpose(2, 0, 1)[None].astype(np.float32)
        input_name = self._session.get_inputs()[0].name
        prediction = self._session.run(None, {input_name: batch})[0][0, 0]
        low, high = float(prediction.min()), float(prediction.max())
        prediction = (prediction - low) / max(high - low, 1e-6)
        matte = Image.fromarray(np.round(prediction * 255.0).astype(np.uint8), mode="L")
        return np.asarray(matte.resize(image.size, Image.LANCZOS))
