"""Inputs of ``multiview-to-3d``: the six orthographic views of the view contract (``predictors.geometry.cameras``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from predictors.inputs import option, required

VIEW_NOTE = (
    "orthographic view of the object centred in the image, the image spanning the same world extent in every "
    "view; PNG with alpha as mask is best, otherwise the border colour is the background (see README)."
)


@dataclass(frozen=True)
class MultiviewTo3DInputs:
    # The six names are SIX_VIEWS of predictors.geometry.cameras, in its order.
    front: Path = required("front view (camera on +z). " + VIEW_NOTE)
    back: Path = required("back view (camera on -z).")
    left: Path = required("left view (camera on -x).")
    right: Path = required("right view (camera on +x).")
    top: Path = required("top view (camera on +y; image-up is -z).")
    bottom: Path = required("bottom view (camera on -y; image-up is +z).")
    resolution: int = option(128, "voxel grid resolution for carving.", ge=32, le=256)
    texture_size: int = option(1024, "texture width and height in pixels.", ge=256, le=4096)
