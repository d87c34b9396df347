"""Shared 3D code: mesh I/O, cameras, render passes, UV unwrapping, baking and export."""
