"""The ``text-to-multiview`` task: MVDream (SD2.1-base with multi-view attention) -> four consistent views.

Modules: ``cameras`` (MVDream's camera vectors and the matching reconstruction cameras), ``attention`` (the
multi-view self-attention processor), ``unet`` (UNet and scheduler configs, the multi-view UNet wrapper),
``pipeline`` (prompt encoding, DDIM sampling with classifier-free guidance, decoding), ``background``
(foreground masks), ``task`` (the runner), ``tiny`` (tiny random stacks in the official layout).
"""
