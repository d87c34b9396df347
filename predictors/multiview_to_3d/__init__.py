"""The ``multiview-to-3d`` task: posed views (six orthographic by default) -> textured mesh.

``load_views`` validates the six-view contract, ``reconstruct`` carves the visual hull, extracts and
cleans its surface, unwraps it and bakes the views into a texture.
"""

from predictors.multiview_to_3d.reconstruct import reconstruct
from predictors.multiview_to_3d.views import ViewSet, load_views

__all__ = ["ViewSet", "load_views", "reconstruct"]
