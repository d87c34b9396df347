"""OpenAPI schemas of Cog predictor classes, built the way ``cog build`` does, without Docker or the Go CLI.

The coglet server validates inputs (HTTP 422 on a bad enum or an out-of-range number) only when
``.cog/openapi_schema.json`` exists. The inputs come from the Cog SDK's own introspection of a predictor class;
the layout follows the rules of Cog's schema generator (per-field ``x-order``, ``title``, enum components
referenced with ``allOf``, ``nullable`` for ``Optional``, ``default`` only for real defaults, ``required`` for
the rest). ``tools/cog_predictors.py`` writes the files.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def _input_schema(info: Any, accepts: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``Input`` object schema and the enum components of fields with ``choices``."""
    from cog._adt import Repetition

    properties: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    required = []
    for name, field in info.inputs.items():
        optional = field.type.repetition in (Repetition.OPTIONAL, Repetition.OPTIONAL_REPEATED)
        prop: dict[str, Any] = {"x-order": field.order}
        if field.choices is not None:
            enums[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": list(field.choices),
                **{"type": field.type.primitive.json_type()["type"]},
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = _title(name)
            prop.update(field.type.json_type())
        if field.default is not None:
            prop["default"] = field.default
        if optional:
            prop["nullable"] = True
        elif field.default is None:
            required.append(name)
        if field.description:
            prop["description"] = field.description
        for key, attr in (
            ("minimum", "ge"),
            ("maximum", "le"),
            ("minLength", "min_length"),
            ("maxLength", "max_length"),
            ("pattern", "regex"),
            ("deprecated", "deprecated"),
        ):
            value = getattr(field, attr)
            if value is not None:
                prop[key] = value
        if name in accepts:
            prop["x-cog-accept"] = accepts[name]
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def _accepts(predictor_class: type) -> dict[str, str]:
    """``accept=`` of each input, which the SDK's InputField does not carry."""
    from cog.input import FieldInfo

    signature = inspect.signature(predictor_class.run)
    return {
        name: param.default.accept
        for name, param in signature.parameters.items()
        if isinstance(param.default, FieldInfo) and param.default.accept
    }


def _static_components() -> dict[str, Any]:
    return {
        "PredictionRequest": {
            "title": "PredictionRequest",
            "type": "object",
            "properties": {
                "id": {"title": "Id", "type": "string"},
                "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                "input": {"$ref": "#/components/schemas/Input"},
                "webhook": {
                    "title": "Webhook",
                    "type": "string",
                    "format": "uri",
                    "maxLength": 65536,
                    "minLength": 1,
                },
                "webhook_events_filter": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/WebhookEvent"},
                    "default": ["start", "output", "logs", "completed"],
                },
                "output_file_prefix": {"title": "Output File Prefix", "type": "string"},
            },
        },
        "PredictionResponse": {
            "title": "PredictionResponse",
            "type": "object",
            "properties": {
                "id": {"title": "Id", "type": "string"},
                "version": {"title": "Version", "type": "string"},
                "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
                "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
                "logs": {"title": "Logs", "type": "string", "default": ""},
                "error": {"title": "Error", "type": "string"},
                "status": {"$ref": "#/components/schemas/Status"},
                "metrics": {"title": "Metrics", "type": "object"},
                "input": {"$ref": "#/components/schemas/Input"},
                "output": {"$ref": "#/components/schemas/Output"},
            },
        },
        "Status": {
            "title": "Status",
            "description": "An enumeration.",
            "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
            "type": "string",
        },
        "WebhookEvent": {
            "title": "WebhookEvent",
            "description": "An enumeration.",
            "enum": ["start", "output", "logs", "completed"],
            "type": "string",
        },
        "ValidationError": {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "title": "Location",
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": {"title": "Message", "type": "string"},
                "type": {"title": "Error Type", "type": "string"},
            },
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {
                    "title": "Detail",
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                }
            },
        },
    }


def _paths() -> dict[str, Any]:
    response = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionResponse"}}}
    }
    invalid = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}
    }
    request = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}
    }
    return {
        "/": {
            "get": {
                "summary": "Root",
                "operationId": "root__get",
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
        "/health-check": {
            "get": {
                "summary": "Healthcheck",
                "operationId": "healthcheck_health_check_get",
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
        "/predictions": {
            "post": {
                "summary": "Predict",
                "description": "Run a single prediction on the model",
                "operationId": "predict_predictions_post",
                "requestBody": request,
                "responses": {
                    "200": {"description": "Successful Response", **response},
                    "422": {"description": "Validation Error", **invalid},
                },
            }
        },
        "/predictions/{prediction_id}/cancel": {
            "post": {
                "summary": "Cancel",
                "operationId": "cancel_predictions__prediction_id__cancel_post",
                "parameters": [
                    {
                        "required": True,
                        "schema": {"title": "Prediction ID", "type": "string"},
                        "name": "prediction_id",
                        "in": "path",
                    }
                ],
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
        "/shutdown": {
            "post": {
                "summary": "Start Shutdown",
                "operationId": "start_shutdown_shutdown_post",
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
    }


def build_schema(module: str, class_name: str) -> dict[str, Any]:
    """The OpenAPI document for the predictor class ``module:class_name`` (an importable module name)."""
    from cog._inspector import create_predictor

    sys.path.insert(0, str(ROOT))
    info = create_predictor(module, class_name)
    predictor_class = getattr(sys.modules[module], class_name)
    input_schema, enums = _input_schema(info, _accepts(predictor_class))
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": _paths(),
        "components": {
            "schemas": {
                "Input": input_schema,
                "Output": info.output.json_type(),
                **enums,
                **_static_components(),
            }
        },
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
