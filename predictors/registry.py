"""The tasks this container serves, and the model versions of each: one entry per task, one line per version.

Names are ``"module:attribute"`` strings so that reading the registry imports nothing heavy. A task's
``inputs`` is its declaration dataclass (``predictors.inputs``); each version's ``loader`` takes a
``predictors.runtime.LoadEnv`` and returns the runner (``generate(inputs, context) -> TaskResult``), and its
optional ``inputs`` is a subclass of the task's declaration adding the inputs only that version has. A version is available when one of its ``requires``
alternatives is fully installed (``weights/manifest.json`` stack names; an empty tuple needs no weights), and
``pipeline`` is the class its main stack's ``pipeline.json`` must name. A composed task lists the tasks it
``uses``; it is available when they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Version:
    """One implementation of a task (e.g. TRELLIS v1 for image-to-3d)."""

    name: str
    loader: str
    requires: tuple[tuple[str, ...], ...] = ((),)
    inputs: str | None = None
    pipeline: str | None = None  # the "name" its first required stack's pipeline.json must carry


@dataclass(frozen=True)
class Task:
    """A task of the ``task`` input: its input declaration, versions and outputs."""

    name: str
    summary: str
    inputs: str
    versions: tuple[Version, ...]
    writes_mesh: bool = False  # the common mesh outputs (predictors.outputs.MeshOutputs) apply
    version_input: str | None = None  # the input that picks a version ("auto" = the best installed)
    uses: tuple[str, ...] = ()  # tasks whose loaded pipelines a composed task calls


TASKS: tuple[Task, ...] = (
    Task(
        "texture",
        "Texture a mesh from a prompt by synchronised multi-view diffusion (SD1.5 / SDXL + ControlNet, "
        "optional IP-Adapter image prompt).",
        "predictors.texture.inputs:TextureInputs",
        (
            Version(
                "syncmvd",
                "predictors.texture.task:load",
                requires=(("sd15", "controlnet-sd15-depth"), ("sdxl-base", "controlnet-sdxl-depth")),
            ),
        ),
        writes_mesh=True,
    ),
    Task(
        "image-to-3d",
        "Turn one image into a textured 3D model (TRELLIS).",
        "predictors.image_to_3d.inputs:ImageTo3DInputs",
        (
            Version(
                "trellis",
                "predictors.image_to_3d.trellis.task:load",
                requires=(("trellis-image-large", "dinov2-with-registers-large"),),
                inputs="predictors.image_to_3d.trellis.inputs:TrellisInputs",
                pipeline="TrellisImageTo3DPipeline",
            ),
        ),
        writes_mesh=True,
        version_input="model",
    ),
    Task(
        "text-to-multiview",
        "Four consistent views of an object from a prompt (MVDream).",
        "predictors.text_to_multiview.inputs:TextToMultiviewInputs",
        (
            Version(
                "mvdream", "predictors.text_to_multiview.task:load", requires=(("mvdream-sd21", "sd21-base"),)
            ),
        ),
    ),
    Task(
        "multiview-to-3d",
        "Reconstruct a textured mesh from six orthographic views (visual hull, colours baked from the views).",
        "predictors.multiview_to_3d.inputs:MultiviewTo3DInputs",
        (Version("hull", "predictors.multiview_to_3d.task:load"),),
        writes_mesh=True,
    ),
    Task(
        "text-to-3d",
        "A textured 3D model from a prompt: MVDream's four views, reconstructed from their posed silhouettes.",
        "predictors.text_to_3d:TextTo3DInputs",
        (Version("mvdream-hull", "predictors.text_to_3d:load"),),
        writes_mesh=True,
        uses=("text-to-multiview", "multiview-to-3d"),
    ),
)

TASK_NAMES: tuple[str, ...] = tuple(task.name for task in TASKS)


def get_task(name: str) -> Task:
    """The registered task called ``name``; ValueError listing the tasks otherwise."""
    for task in TASKS:
        if task.name == name:
            return task
    raise ValueError(f"unknown task {name!r}; tasks: {', '.join(task.name for task in TASKS)}")
