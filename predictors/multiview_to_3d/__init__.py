"""The ``multiview-to-3d`` task: six orthographic views -> textured mesh.

``views.load_views`` validates the six-view contract; the reconstruction itself (visual hull, surface,
UV unwrap, bake) is shared 3D code in ``predictors.geometry.reconstruct``; ``task`` wires it to the predictor.
"""
