"""cog.yaml, requirements and the generated Cog files (predict.py, schemas, per-task configs) agree with Cog's
own rules and the tasks' input declarations."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import predict
from predictors.forms import combined_form, task_form
from predictors.inputs import REQUIRED
from predictors.registry import TASK_NAMES
from tools import cog_predictors

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


def test_task_choices_are_the_registered_tasks():
    assert tuple(predict.TASKS) == TASK_NAMES


def test_generated_files_are_current():
    stale = [
        str(path.relative_to(ROOT))
        for path, content in cog_predictors.generated_files().items()
        if not path.exists() or path.read_text() != content
    ]
    assert not stale, f"run `python -m tools.cog_predictors`: stale {stale}"


def _inputs(schema_path: Path) -> tuple[dict, dict]:
    schemas = json.loads(schema_path.read_text())["components"]["schemas"]
    return schemas, schemas["Input"]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_each_task_schema_shows_real_defaults_and_requires_what_the_task_needs(task):
    schemas, schema = _inputs(ROOT / ".cog" / "schemas" / f"{task}.json")
    form = task_form(task)
    properties = schema["properties"]
    assert list(properties) == [field.name for field in form.fields]
    required = [field.name for field in form.fields if field.is_required]
    assert schema.get("required", []) == required
    for field in form.fields:
        prop = properties[field.name]
        if field.default is None:
            assert prop.get("nullable") is True and "default" not in prop, field.name
        elif not field.is_required:
            assert prop["default"] == field.default, field.name
        if field.spec.choices is not None:
            assert schemas[field.name]["enum"] == list(field.spec.choices)
    assert schemas["Output"] == {
        "title": "Output",
        "type": "array",
        "items": {"type": "string", "format": "uri"},
    }
    orders = sorted(prop["x-order"] for prop in properties.values())
    assert orders == list(range(len(properties)))


def test_combined_schema_shows_a_default_wherever_the_tasks_agree():
    schemas, schema = _inputs(ROOT / ".cog" / "openapi_schema.json")
    properties = schema["properties"]
    assert schema["required"] == ["task"]
    assert schemas["task"]["enum"] == list(TASK_NAMES)
    assert properties["task"]["allOf"] == [{"$ref": "#/components/schemas/task"}]
    for merged in combined_form():
        prop = properties[merged.field.name]
        assert prop["nullable"] is True
        agreed = {repr(value) for value in merged.defaults.values()}
        if merged.field.kind == "bool":
            assert "default" in prop, f"{merged.field.name}: a boolean must show its default"
        values = list(merged.defaults.values())
        if len(agreed) == 1 and values[0] is not None and values[0] is not REQUIRED:
            assert prop["default"] == next(iter(merged.defaults.values())), merged.field.name
        assert all(task in prop["description"] or "all tasks" in prop["description"] for task in merged.tasks)
    assert properties["steps"].get("default") is None and "texture" in properties["steps"]["description"]
    assert properties["video"]["default"] is True and properties["top_views"]["default"] is True
    assert schemas["image_size"]["enum"] == [128, 192, 256, 320, 384, 448, 512]
    assert properties["resolution"]["minimum"] == 32 and properties["resolution"]["maximum"] == 256
    assert properties["front"]["format"] == "uri"


def test_per_task_cog_configs_select_their_class():
    base = _cog_config()
    for task in TASK_NAMES:
        config = yaml.safe_load((ROOT / "cog-configs" / f"{task}.yaml").read_text())
        assert config["run"] == f"predict.py:{cog_predictors._class_name(task)}"
        assert {k: v for k, v in config.items() if k != "run"} == {
            k: v for k, v in base.items() if k != "run"
        }
        jsonschema.validate(config, _vendor("cog_config_schema_v1.0.json"))
