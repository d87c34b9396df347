"""Kernels behind stable APIs, each with a pure-PyTorch backend and optional native backends."""
