"""Pieces the diffusion tasks share (texture, text-to-multiview, and what composes them): prompt encoding,
multi-view self-attention, offline component loading and VAE decoding. Task packages never import each other,
so these live here."""
