"""Weights: the manifest of every stack, the download tool and the tiny random stacks used by tests."""
