"""Forms: the full list of inputs of each task, of the combined predictor, and how a request is routed.

A task's form is, in order: its own inputs, its version input and the inputs of its versions (tasks with a
version slot), the mesh outputs (tasks that return a mesh) and ``seed``. The combined form starts with ``task``
and holds every task's inputs once: an input shared by several tasks shows a default only where they agree, and
every input is nullable (``None`` = the chosen task's default). The Cog classes and schemas are generated from
these forms (``tools/cog_predictors.py``); the engine routes requests with :func:`route`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from predictors import registry
from predictors.inputs import REQUIRED, InputField, Spec, check_value, input_fields, option
from predictors.outputs import MeshOutputs
from predictors.registry import Task, get_task

AUTO_VERSION = "auto"


@dataclass(frozen=True)
class RunInputs:
    """Inputs of every task."""

    seed: int | None = option(
        None,
        "random seed; the same seed and inputs give the same files on one device. Empty: a random seed, "
        "printed in the logs.",
        ge=0,
        le=2**32 - 1,
    )


def load_attribute(reference: str) -> Any:
    """The object named by ``"module:attribute"``."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class TaskForm:
    """A task's inputs grouped by who consumes them; ``fields`` is the whole form in order."""

    task: Task
    own: tuple[InputField, ...]
    version: InputField | None
    by_version: dict[str, tuple[InputField, ...]]
    mesh_outputs: tuple[InputField, ...]
    run: tuple[InputField, ...]

    @property
    def fields(self) -> tuple[InputField, ...]:
        versions: dict[str, InputField] = {}
        for fields in self.by_version.values():
            for field in fields:
                versions.setdefault(field.name, field)
        head = (self.version,) if self.version is not None else ()
        return (*self.own, *head, *versions.values(), *self.mesh_outputs, *self.run)


@cache
def task_form(name: str) -> TaskForm:
    """The form of task ``name`` (raises ValueError for an unknown task)."""
    task = get_task(name)
    own = input_fields(load_attribute(task.inputs))
    shared = {field.name for field in own}
    by_version = {
        version.name: tuple(f for f in input_fields(load_attribute(version.inputs)) if f.name not in shared)
        if version.inputs
        else ()
        for version in task.versions
    }
    version_field = None
    if task.version_input is not None:
        names = tuple(version.name for version in task.versions)
        version_field = InputField(
            task.version_input,
            "str",
            False,
            AUTO_VERSION,
            Spec(
                f"model version: {AUTO_VERSION} (the best one installed, in this order: {', '.join(names)}) "
                f"or one of {', '.join(names)}.",
                choices=(AUTO_VERSION, *names),
            ),
        )
    form = TaskForm(
        task,
        own,
        version_field,
        by_version,
        input_fields(MeshOutputs) if task.writes_mesh else (),
        input_fields(RunInputs),
    )
    _check_unique(form)
    return form


def _check_unique(form: TaskForm) -> None:
    seen: dict[str, InputField] = {}
    groups = [form.own, (form.version,) if form.version else (), *form.by_version.values()]
    for field in [f for group in groups for f in group] + [*form.mesh_outputs, *form.run]:
        if field.name in seen and seen[field.name] != field:
            raise TypeError(f"task {form.task.name}: input {field.name} is declared twice, differently")
        seen[field.name] = field


@dataclass(frozen=True)
class CombinedField:
    """One input of the combined form: the tasks that use it and the merged declaration."""

    field: InputField
    tasks: tuple[str, ...]
    defaults: dict[str, Any]  # per task


@cache
def combined_form() -> tuple[CombinedField, ...]:
    """Every task's inputs once, in task order; defaults only where the tasks agree."""
    users: dict[str, list[tuple[str, InputField]]] = {}
    for task in registry.TASKS:
        for field in task_form(task.name).fields:
            users.setdefault(field.name, []).append((task.name, field))
    return tuple(_merge(name, uses) for name, uses in users.items())


def _merge(name: str, uses: list[tuple[str, InputField]]) -> CombinedField:
    fields = [field for _, field in uses]
    tasks = tuple(task for task, _ in uses)
    first = fields[0]
    if any(field.kind != first.kind for field in fields):
        raise TypeError(f"input {name} has different types in {', '.join(tasks)}")
    defaults = {task: field.default for task, field in uses}
    agreed = len({repr(value) for value in defaults.values()}) == 1
    default = first.default if agreed and first.default is not REQUIRED else None
    if first.kind == "bool" and default is None:
        raise TypeError(f"boolean input {name} needs one default across {', '.join(tasks)}")
    lows = [field.spec.ge for field in fields]
    highs = [field.spec.le for field in fields]
    choices = {field.spec.choices for field in fields}
    spec = Spec(
        _combined_description(uses, agreed),
        ge=None if None in lows else min(lows),
        le=None if None in highs else max(highs),
        choices=choices.pop() if len(choices) == 1 else None,
    )
    return CombinedField(InputField(name, first.kind, True, default, spec), tasks, defaults)


def _combined_description(uses: list[tuple[str, InputField]], agreed: bool) -> str:
    """ "<tasks>: <description>", listing each group of tasks with its own description and default where the
    tasks disagree."""
    groups: dict[tuple[str, str], list[str]] = {}
    for task, field in uses:
        default = (
            "" if agreed else (" (required)" if field.is_required else f" (default {_shown(field.default)})")
        )
        groups.setdefault((field.spec.description.rstrip("."), default), []).append(task)
    parts = []
    for (description, default), tasks in groups.items():
        owners = "all tasks" if len(tasks) == len(registry.TASKS) else ", ".join(tasks)
        parts.append(f"{owners}: {description}{default}")
    return "; ".join(parts) + "."


def _shown(value: Any) -> str:
    return "empty" if value is None or value == "" else str(value)


@dataclass(frozen=True)
class Request:
    """A routed request: the version to run and the values for each consumer (missing = default)."""

    task: Task
    version: str | None  # None: the best installed (decided by the engine)
    own: dict[str, Any]
    version_values: dict[str, Any]
    mesh_outputs: dict[str, Any]
    seed: int | None


def route(task_name: str, values: dict[str, Any], *, combined: bool) -> Request:
    """Split a request's ``values`` by consumer for ``task_name``.

    In the combined form an input the task does not use must be left at its combined default (or null);
    otherwise it is an error naming the tasks that use it. An input of another version of the task must be
    left at its default too.
    """
    form = task_form(task_name)
    names = {field.name for field in form.fields}
    if combined:
        for merged in combined_form():
            name = merged.field.name
            if name in names or name == "task":
                continue
            value = values.get(name)
            if value is not None and value != merged.field.default:
                raise ValueError(
                    f"input {name} does not apply to task {task_name}; it is an input of "
                    f"{', '.join(merged.tasks)}. Leave it empty or pick one of those tasks."
                )
    else:
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"task {task_name} has no input named {', '.join(unknown)}")
    version = None
    if form.version is not None:
        choice = check_value(form.version, values.get(form.version.name), f"task {task_name}")
        version = None if choice == AUTO_VERSION else choice
    return Request(
        form.task,
        version,
        _values(form.own, values),
        {name: _values(fields, values) for name, fields in form.by_version.items()},
        _values(form.mesh_outputs, values),
        values.get("seed"),
    )


def _values(fields: tuple[InputField, ...], values: dict[str, Any]) -> dict[str, Any]:
    return {field.name: values[field.name] for field in fields if values.get(field.name) is not None}


def version_values(request: Request, version: str) -> dict[str, Any]:
    """The values of ``version``'s own inputs; ValueError when another version's input was given."""
    form = task_form(request.task.name)
    own = {field.name for field in form.by_version[version]}
    for other, fields in form.by_version.items():
        for field in fields:
            value = request.version_values[other].get(field.name)
            if field.name not in own and value is not None and value != field.default:
                users = [v for v, fs in form.by_version.items() if any(f.name == field.name for f in fs)]
                raise ValueError(
                    f"input {field.name} applies to {form.version.name}={' or '.join(users)} only; "
                    f"this prediction runs {form.version.name}={version}"
                )
    return request.version_values[version]
