"""Image-to-3D task: a pure-PyTorch, key-compatible build of TRELLIS image-large."""
