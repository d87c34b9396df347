"""Foreground masks of images without alpha: the object on a plain background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND_TOLERANCE = 0.1  # max per-channel difference (colours in [0, 1]) from the border colour
MIN_PLAIN_BORDER = 0.5  # fraction of border pixels that must match the border colour


def background_mask(rgb: np.ndarray, name: str = "view") -> np.ndarray:
    """Foreground mask [H, W] bool of an RGB image [H, W, 3] in [0, 1] on a plain background.

    Raises:
        ValueError: the border ring is not (mostly) one plain colour.
    """
    ring = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    colour = np.median(ring, axis=0)
    if (np.abs(ring - colour).max(axis=1) <= BACKGROUND_TOLERANCE).mean() < MIN_PLAIN_BORDER:
        raise ValueError(
            f"{name} has no alpha channel and its border is not a plain background colour; "
            "upload an RGBA image with the background removed, or use a plain background"
        )
    similar = np.abs(rgb - colour).max(axis=2) <= BACKGROUND_TOLERANCE
    labels, _ = ndimage.label(similar)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border_labels[border_labels > 0])
    return ~background
