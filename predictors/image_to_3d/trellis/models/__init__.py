"""TRELLIS image-large models with the official class names, constructor args and parameter names.

``MODEL_CLASSES`` maps the ``"name"`` of an official ``ckpts/<stem>.json`` to our class (imported lazily, so
the dense models work without the sparse extension being imported); :func:`load_model` builds and loads one.
"""

from __future__ import annotations

from predictors.image_to_3d.trellis.models.loading import MODEL_CLASSES, build_model, load_model, model_class

__all__ = ["MODEL_CLASSES", "build_model", "load_model", "model_class"]
