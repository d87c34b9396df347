"""cog.yaml, requirements and the committed OpenAPI schema agree with Cog's own rules and our predictor."""

import inspect
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import predict
from predictors.engine import TASK_SPECS, TASKS
from tools import openapi_schema

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT.parent / "shared" / "vendor"


def _vendor(name: str) -> dict | list:
    path = VENDOR / name
    if not path.exists():
        pytest.skip(f"{path} not found (shared/vendor sits beside the checkout)")
    return json.loads(path.read_text())


def _cog_config() -> dict:
    return yaml.safe_load((ROOT / "cog.yaml").read_text())


def test_cog_yaml_matches_cogs_schema():
    jsonschema.validate(_cog_config(), _vendor("cog_config_schema_v1.0.json"))


def test_cog_yaml_essentials():
    config = _cog_config()
    build = config["build"]
    assert build["gpu"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+", build["sdk_version"])
    assert config["run"] == "predict.py:Predictor"
    assert (ROOT / build["python_requirements"]).is_file()
    names = {entry.split("=")[0] for entry in config["environment"]}
    assert "TORCH_CUDA_ARCH_LIST" in names
    forbidden = re.compile(r"^(PATH|LD_LIBRARY_PATH|PYTHONPATH|CUDA_.*|NVIDIA_.*|NV_.*|R8_.*|REPLICATE_.*)$")
    assert not [name for name in names if forbidden.match(name)]
    # build.run cannot see the source tree: no local paths or cd into the repo.
    for command in build.get("run", []):
        assert "cd " not in command and "./" not in command, command


def test_torch_pin_is_in_cogs_compatibility_table():
    pins = dict(
        line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line
    )
    config = _cog_config()["build"]
    table = _vendor("cog_torch_compatibility.json")
    matches = [
        entry
        for entry in table
        if entry["Torch"].split("+")[0] == pins["torch"]
        and entry.get("CUDA") == config["cuda"]
        and config["python_version"] in entry["Pythons"]
    ]
    assert matches, (
        f"torch=={pins['torch']} with CUDA {config['cuda']} / Python {config['python_version']} unknown to Cog"
    )


def test_task_choices_are_the_engines_tasks():
    assert tuple(predict.TASKS) == TASKS


def test_every_run_input_is_claimed_by_a_task_and_described():
    parameters = inspect.signature(predict.Predictor.run).parameters
    inputs = [name for name in parameters if name not in ("self", "task", "seed")]
    claimed = {name for spec in TASK_SPECS.values() for name in spec.inputs}
    assert set(inputs) == claimed
    for name in inputs:
        description = parameters[name].default.description
        users = [task for task, spec in TASK_SPECS.items() if name in spec.inputs]
        assert all(task in description for task in users), f"{name}: {description!r} should name {users}"
        assert parameters[name].default.default is None, f"{name} must default to None (the task's default)"


def test_committed_openapi_schema_is_current():
    committed = json.loads((ROOT / ".cog" / "openapi_schema.json").read_text())
    assert committed == openapi_schema.build_schema(), "run `python -m tools.openapi_schema`"


def test_openapi_schema_rules():
    schema = openapi_schema.build_schema()["components"]["schemas"]
    properties = schema["Input"]["properties"]
    assert schema["Input"]["required"] == ["task"]
    assert schema["task"]["enum"] == list(TASKS)
    assert properties["task"]["allOf"] == [{"$ref": "#/components/schemas/task"}]
    assert properties["seed"]["nullable"] is True and "default" not in properties["seed"]
    assert properties["resolution"]["minimum"] == 32 and properties["resolution"]["maximum"] == 256
    assert properties["front"]["format"] == "uri"
    assert schema["Output"] == {
        "title": "Output",
        "type": "array",
        "items": {"type": "string", "format": "uri"},
    }
    orders = sorted(prop["x-order"] for prop in properties.values())
    assert orders == list(range(len(properties)))
