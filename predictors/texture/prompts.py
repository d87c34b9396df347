"""Directional prompts per view with anti-Janus negatives (SyncMVD ``prompt.py`` rules).

Positive: ``"{prompt}, {direction} view."`` with direction top (elevation > 30°), bottom (< -30°), front
(|azimuth| <= 30°), back (|azimuth| >= 120°), else side; the default top cameras sit at exactly 30° and so get
front/back. Negative: front views use ``"{negative}, view."``, every other view ``"{negative}, front view."``,
which discourages a second face on the sides and the back.
"""

from __future__ import annotations

from collections.abc import Sequence

TOP_ELEVATION = 30.0
FRONT_AZIMUTH = 30.0
BACK_AZIMUTH = 120.0


def view_direction(azimuth_deg: float, elevation_deg: float) -> str:
    """ "front", "side", "back", "top" or "bottom" for a camera (azimuth 0 = front)."""
    if elevation_deg > TOP_ELEVATION:
        return "top"
    if elevation_deg < -TOP_ELEVATION:
        return "bottom"
    azimuth = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    if azimuth <= FRONT_AZIMUTH:
        return "front"
    if azimuth >= BACK_AZIMUTH:
        return "back"
    return "side"


def directional_prompts(
    prompt: str, negative_prompt: str, azimuths: Sequence[float], elevations: Sequence[float]
) -> tuple[list[str], list[str]]:
    """(positive prompts, negative prompts), one of each per view."""
    directions = [view_direction(a, e) for a, e in zip(azimuths, elevations, strict=True)]
    positives = [f"{prompt}, {direction} view." for direction in directions]
    negatives = [
        f"{negative_prompt}, view." if direction == "front" else f"{negative_prompt}, front view."
        for direction in directions
    ]
    return positives, negatives
