"""The ``texture`` task: synchronised multi-view diffusion (SyncMVD-style) on a given mesh."""
