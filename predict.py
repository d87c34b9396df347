"""Cog adapter: input declarations, task dispatch and output files. No model code lives here.

Every task-specific input is ``Optional`` with ``None`` meaning "the task's default", and its description
starts with the task(s) it applies to. Cross-field rules (e.g. ``multiview-to-3d`` needs all six views) are
checked in ``predictors.engine`` and reported as ``ValueError``.
"""

import os

# Runtime policy, set before torch or any hub library is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no per-model "Loading weights" bars in the logs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


from cog import BaseRunner, Input, Path

# Literal lists so that Cog's static schema parser can resolve the choices (tests keep them in sync).
TASKS = ["texture", "image-to-3d", "text-to-multiview", "multiview-to-3d"]
CONDITIONS = ["depth", "normal", "canny"]

MV = "multiview-to-3d: "
TEX = "texture: "
I23 = "image-to-3d: "
T2MV = "text-to-multiview: "
VIEW_NOTE = (
    "orthographic view of the object centred in the image, the image spanning the same world extent in every "
    "view; PNG with alpha as mask is best, otherwise the border colour is the background (see README)."
)


class Predictor(BaseRunner):
    """One predictor, four tasks: texture a mesh, image to 3D, text to multi-view, multi-view to 3D."""

    def setup(self) -> None:
        """Load every task whose weights are installed (``WEIGHTS_DIR``); log what loaded, time and memory."""
        from predictors.engine import Engine
        from predictors.runtime import OutputFolders, select_device
        from weights.manifest import load_manifest, weights_dir

        self.engine = Engine(weights_dir(), select_device())
        self.engine.setup(load_manifest())
        self.outputs = OutputFolders()

    def run(
        self,
        task: str = Input(description="What to do.", choices=TASKS),
        seed: int | None = Input(
            description="All tasks: random seed; the same seed and inputs give the same files on one device. "
            "Empty: a random seed, printed in the logs.",
            default=None,
            ge=0,
            le=2**32 - 1,
        ),
        # multiview-to-3d
        front: Path | None = Input(description=MV + "front view (camera on +z). " + VIEW_NOTE, default=None),
        back: Path | None = Input(description=MV + "back view (camera on -z).", default=None),
        left: Path | None = Input(description=MV + "left view (camera on -x).", default=None),
        right: Path | None = Input(description=MV + "right view (camera on +x).", default=None),
        top: Path | None = Input(description=MV + "top view (camera on +y; image-up is -z).", default=None),
        bottom: Path | None = Input(
            description=MV + "bottom view (camera on -y; image-up is +z).", default=None
        ),
        resolution: int | None = Input(
            description=MV + "voxel grid resolution for carving (default 128).", default=None, ge=32, le=256
        ),
        texture_size: int | None = Input(
            description="texture, image-to-3d, multiview-to-3d: texture width and height in pixels (default 1024).",
            default=None,
            ge=256,
            le=4096,
        ),
        # texture
        mesh: Path | None = Input(
            description=TEX + "mesh to texture: GLB, glTF (zipped with its files), OBJ (zipped with MTL and "
            "textures), PLY or STL.",
            default=None,
        ),
        prompt: str | None = Input(
            description='texture, text-to-multiview: text prompt (text-to-multiview appends ", 3d asset" as '
            "MVDream's sampling script does).",
            default=None,
        ),
        negative_prompt: str | None = Input(
            description="texture, text-to-multiview: what to avoid.", default=None
        ),
        base_model: str | None = Input(
            description=TEX
            + "base model: sd15 (default), sdxl, or the name of a single-file SD1.5/SDXL checkpoint placed in "
            "checkpoints/<name>.safetensors of the weights folder.",
            default=None,
        ),
        condition: str | None = Input(
            description=TEX
            + "ControlNet condition rendered from the mesh (default depth; normal and canny need their "
            "ControlNet stack installed; SDXL has depth and canny only).",
            default=None,
            choices=CONDITIONS,
        ),
        image_prompt: Path | None = Input(
            description=TEX + "optional image prompt steering the look (IP-Adapter plus): PNG, JPEG or WebP.",
            default=None,
        ),
        image_prompt_scale: float | None = Input(
            description=TEX + "strength of the image prompt (default 0.5).", default=None, ge=0.0, le=2.0
        ),
        steps: int | None = Input(
            description="texture, text-to-multiview: denoising steps (defaults: texture 30, text-to-multiview 50).",
            default=None,
            ge=1,
            le=150,
        ),
        guidance_scale: float | None = Input(
            description="texture, text-to-multiview: classifier-free guidance scale (texture: default 15.5; "
            "text-to-multiview: default 7.5, MVDream's own scripts use 7.5-10).",
            default=None,
            ge=0.0,
            le=30.0,
        ),
        controlnet_scale: float | None = Input(
            description=TEX
            + "ControlNet conditioning scale at the first step (default 0.7), ramped to 9/7 of it at the end.",
            default=None,
            ge=0.0,
            le=2.0,
        ),
        keep_uv: bool | None = Input(
            description=TEX + "use the mesh's own UVs when it has them (default false: new UV atlas).",
            default=None,
        ),
        camera_azimuths: str | None = Input(
            description=TEX + "comma-separated view azimuths in degrees (default 8 views around).",
            default=None,
        ),
        top_views: bool | None = Input(
            description=TEX + "add the two views from 30° above (default true).", default=None
        ),
        # image-to-3d
        image: Path | None = Input(
            description=I23 + "input image: PNG, JPEG or WebP; alpha is used as the mask when present.",
            default=None,
        ),
        ss_steps: int | None = Input(
            description=I23 + "sparse-structure sampling steps (default 12).", default=None, ge=1, le=100
        ),
        ss_guidance: float | None = Input(
            description=I23 + "sparse-structure guidance strength (default 7.5).",
            default=None,
            ge=0.0,
            le=20.0,
        ),
        slat_steps: int | None = Input(
            description=I23 + "structured-latent sampling steps (default 12).", default=None, ge=1, le=100
        ),
        slat_guidance: float | None = Input(
            description=I23 + "structured-latent guidance strength (default 3.0).",
            default=None,
            ge=0.0,
            le=20.0,
        ),
        remove_background: bool | None = Input(
            description=I23 + "remove the background when the image has no alpha (default true).",
            default=None,
        ),
        face_count: int | None = Input(
            description=I23 + "target face count after decimation (default 20000).",
            default=None,
            ge=1000,
            le=500_000,
        ),
        video: bool | None = Input(
            description=I23 + "also render a turntable video (default true).", default=None
        ),
        # text-to-multiview
        elevation: float | None = Input(
            description=T2MV + "camera elevation in degrees (default 15; MVDream was trained on 0-30).",
            default=None,
            ge=-30,
            le=60,
        ),
        azimuth_start: float | None = Input(
            description=T2MV
            + "azimuth of the first view in MVDream's convention, in degrees; the views are 90° "
            "apart. Default 90: the views are front, right, back, left.",
            default=None,
            ge=0,
            le=360,
        ),
        image_size: int | None = Input(
            description=T2MV
            + "view size in pixels, a multiple of 64 (default 256, MVDream's training size).",
            default=None,
            ge=128,
            le=512,
        ),
        output_3d: bool | None = Input(
            description=T2MV
            + "also reconstruct a textured 3D model (model.glb, turntable.mp4, preview.png) from "
            "the four views, whose PNGs are then RGBA with the background removed (default false).",
            default=None,
        ),
    ) -> list[Path]:
        """Run ``task``; returns the output files (model.glb, turntable.mp4, preview.png, ...)."""
        inputs = {name: _plain(value) for name, value in locals().items() if name not in ("self", "task")}
        from predictors.runtime import RunContext

        out_dir = self.outputs.new()

        def context_factory(seed: int) -> RunContext:
            return RunContext(out_dir, self.engine.device, seed, record_metric=self.record_metric)

        return [Path(path) for path in self.engine.run(task, inputs, context_factory)]


def _plain(value: object) -> object:
    """File inputs arrive as ``cog.Path`` or, for local paths, as ``str``; pass them on as ``str``."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value
