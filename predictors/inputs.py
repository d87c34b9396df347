"""Input declarations: every input is declared once, as a field of its task's frozen dataclass.

A task's inputs are a ``@dataclass(frozen=True)`` whose fields are made with :func:`required` or :func:`option`;
the field's type annotation is the input's type (``str``, ``int``, ``float``, ``bool``, ``Path``, ``list[Path]``,
or one of those ``| None``), its default is the real default, and the metadata carries the description, range
and choices. From that one declaration come the engine's validation (:func:`parse_inputs`), the Cog classes and
OpenAPI schemas (``tools/cog_predictors.py``), the README tables and the tests. Cross-field rules belong in the
dataclass's ``__post_init__`` and raise ``ValueError``.

Declaration modules import nothing heavy (no torch), so reading them is cheap at setup and in the generators.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class _Required:
    """Sentinel default of an input the request must give."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_METADATA_KEY = "input"
_KINDS = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}


@dataclass(frozen=True)
class Spec:
    """What the form shows for an input besides its type and default."""

    description: str
    ge: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None


def required(description: str) -> Any:
    """A dataclass field for an input the request must give (no default)."""
    return dataclasses.field(default=REQUIRED, metadata={_METADATA_KEY: Spec(description)})


def option(
    default: Any,
    description: str,
    *,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A dataclass field for an optional input with its real ``default`` (``None`` only for "not given")."""
    if choices is not None and (len(choices) < 2 or default not in (*choices, None)):
        raise ValueError(f"choices {choices!r} need two or more values including the default {default!r}")
    return dataclasses.field(default=default, metadata={_METADATA_KEY: Spec(description, ge, le, choices)})


@dataclass(frozen=True)
class InputField:
    """One declared input, resolved from its dataclass field.

    ``kind`` is ``str``, ``int``, ``float``, ``bool``, ``path`` or ``paths`` (a list of files); ``nullable``
    means ``None`` is accepted (the annotation is ``X | None``).
    """

    name: str
    kind: str
    nullable: bool
    default: Any
    spec: Spec

    @property
    def is_required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_file(self) -> bool:
        return self.kind in ("path", "paths")


def input_fields(declaration: type) -> tuple[InputField, ...]:
    """The declared inputs of a dataclass, in declaration order (the form's order)."""
    hints = typing.get_type_hints(declaration)
    fields = []
    for field in dataclasses.fields(declaration):
        spec = field.metadata.get(_METADATA_KEY)
        if spec is None:
            raise TypeError(
                f"{declaration.__name__}.{field.name} must be declared with required() or option()"
            )
        kind, nullable = _kind(hints[field.name], f"{declaration.__name__}.{field.name}")
        if field.default is None and not nullable:
            raise TypeError(
                f"{declaration.__name__}.{field.name}: default None needs an `X | None` annotation"
            )
        fields.append(InputField(field.name, kind, nullable, field.default, spec))
    return tuple(fields)


def _kind(annotation: Any, where: str) -> tuple[str, bool]:
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        others = [arg for arg in args if arg is not type(None)]
        if len(others) != 1 or len(args) != 2:
            raise TypeError(f"{where}: only `X | None` unions are supported, got {annotation}")
        return _kind(others[0], where)[0], True
    if typing.get_origin(annotation) is list and args == (Path,):
        return "paths", False
    if annotation not in _KINDS:
        raise TypeError(f"{where}: unsupported input type {annotation}")
    return _KINDS[annotation], False


def parse_inputs(declaration: type, values: dict[str, Any], owner: str) -> Any:
    """An instance of ``declaration`` from request ``values`` (missing names take their defaults).

    ``owner`` names the task in messages. Raises ``ValueError`` for a missing required input, a value of the
    wrong type, out of range or not among the choices, and whatever the dataclass's ``__post_init__`` rejects.
    """
    fields = {field.name: field for field in input_fields(declaration)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{owner} has no input named {', '.join(unknown)}")
    parsed = {
        name: check_value(field, values.get(name, field.default), owner) for name, field in fields.items()
    }
    missing = [name for name, value in parsed.items() if value is REQUIRED]
    if missing:
        needed = ", ".join(name for name, field in fields.items() if field.is_required)
        raise ValueError(f"{owner} needs {needed}; missing or empty: {', '.join(missing)}")
    return declaration(**parsed)


def check_value(field: InputField, value: Any, owner: str) -> Any:
    """``value`` checked against ``field`` and converted (file inputs become ``Path``).

    ``None`` means "not given": the default (``None`` for a nullable input), or ``REQUIRED`` for a required one,
    which a blank string or file name also is.
    """
    if value is None or value is REQUIRED or (field.is_file and isinstance(value, str) and not value.strip()):
        value = field.default
    if field.is_required and (value is REQUIRED or (isinstance(value, str) and not value.strip())):
        return REQUIRED
    if value is None:
        return None
    value = _convert(field, value, owner)
    spec = field.spec
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(choice) for choice in spec.choices)
        raise ValueError(f"{owner}: {field.name} must be one of {allowed}; got {value!r}")
    if field.kind in ("int", "float"):
        if not math.isfinite(value):
            raise ValueError(f"{owner}: {field.name} must be a finite number; got {value!r}")
        if (spec.ge is not None and value < spec.ge) or (spec.le is not None and value > spec.le):
            raise ValueError(
                f"{owner}: {field.name} must be in [{_number(spec.ge)}, {_number(spec.le)}]; got {value!r}"
            )
    return value


def _number(bound: float | None) -> str:
    return "..." if bound is None else f"{bound:g}"


def _convert(field: InputField, value: Any, owner: str) -> Any:
    wrong = ValueError(f"{owner}: {field.name} must be {_KIND_WORDS[field.kind]}; got {type(value).__name__}")
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if field.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if field.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if field.kind == "str":
        if not isinstance(value, str):
            raise wrong
        return value
    if field.kind == "path":
        if not isinstance(value, str | os.PathLike):
            raise wrong
        return Path(value)
    if not isinstance(value, list | tuple) or not all(isinstance(item, str | os.PathLike) for item in value):
        raise wrong
    return [Path(item) for item in value]


_KIND_WORDS = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "path": "a file",
    "paths": "a list of files",
}
