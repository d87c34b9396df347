"""The weights system: manifest checks, verified installs, and presence checks."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from weights import download
from weights.manifest import load_manifest, missing_stacks


def _write_manifest(path: Path, stacks: dict) -> Path:
    path.write_text(json.dumps({"version": 1, "stacks": stacks}))
    return path


def _entry(files: dict[str, bytes]) -> dict:
    return {
        "task": "texture",
        "repo": "org/model",
        "revision": "a" * 40,
        "licence": "MIT",
        "files": [
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in files.items()
        ],
    }


def test_committed_manifest_parses():
    manifest = load_manifest()
    for stack in manifest.values():
        assert stack.licence and stack.repo and stack.files


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"revision": "main"}, "pinned"),
        ({"files": [{"path": "../x.bin", "sha256": "0" * 64, "size": 1}]}, "inside the stack"),
        ({"files": [{"path": "x.bin", "sha256": "", "size": 1}]}, "sha256"),
        ({"files": []}, "no files"),
    ],
)
def test_manifest_rejects_bad_entries(tmp_path, change, message):
    entry = {**_entry({"x.bin": b"x"}), **change}
    with pytest.raises(ValueError, match=message):
        load_manifest(_write_manifest(tmp_path / "m.json", {"s": entry}))


def _fake_hub(contents: dict[str, bytes]):
    def fetch(stack, file, staging: Path) -> Path:
        path = staging / Path(file.path).name
        path.write_bytes(contents[file.path])
        return path

    return fetch


def test_install_verifies_and_detects_presence(tmp_path):
    files = {"unet/model.safetensors": b"weights" * 100, "config.json": b"{}"}
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"sd": _entry(files)}))
    root = tmp_path / "stacks"
    assert missing_stacks(manifest, ("sd",), root) == ["sd"]
    download.install_stack(manifest["sd"], root, fetch=_fake_hub(files))
    assert (root / "sd" / "unet" / "model.safetensors").read_bytes() == files["unet/model.safetensors"]
    assert missing_stacks(manifest, ("sd",), root) == []
    assert missing_stacks(manifest, ("sd", "other"), root) == ["other"]
    shutil.rmtree(root / "sd" / "unet")
    assert missing_stacks(manifest, ("sd",), root) == ["sd"]


def test_install_rejects_a_corrupted_download(tmp_path):
    files = {"model.bin": b"good bytes"}
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"sd": _entry(files)}))
    with pytest.raises(ValueError, match="failed verification"):
        download.install_stack(
            manifest["sd"], tmp_path / "stacks", fetch=_fake_hub({"model.bin": b"evil bytes"})
        )
    assert not (tmp_path / "stacks" / "sd" / "model.bin").exists()


def test_select_stacks_names_unknown_ones(tmp_path):
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"sd": _entry({"a": b"a"})}))
    assert [s.name for s in download.select_stacks(manifest, ["all"])] == ["sd"]
    with pytest.raises(ValueError, match="unknown stack"):
        download.select_stacks(manifest, ["nope"])


def _unpinned_entry(files: dict[str, bytes], **extra) -> dict:
    return {
        **_entry(files),
        "pinned": False,
        "revision": None,
        "files": [{"path": name, "sha256": None, "size": None} for name in files],
        **extra,
    }


def test_unpinned_entries_parse_and_pinned_ones_need_every_hash(tmp_path):
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"u": _unpinned_entry({"a.bin": b"a"})}))
    stack = manifest["u"]
    assert not stack.pinned and stack.revision is None and stack.files[0].sha256 is None and stack.size == 0
    for change, message in (({"revision": None}, "pinned"), ({"pinned": "no"}, "true or false")):
        with pytest.raises(ValueError, match=message):
            load_manifest(_write_manifest(tmp_path / "m.json", {"s": {**_entry({"a": b"a"}), **change}}))
    sizeless = {**_entry({"a": b"a"}), "files": [{"path": "a", "sha256": "0" * 64, "size": None}]}
    with pytest.raises(ValueError, match="size"):
        load_manifest(_write_manifest(tmp_path / "m.json", {"s": sizeless}))


def test_unpinned_stacks_download_only_when_allowed(tmp_path, capsys):
    files = {"model.bin": b"unpinned bytes"}
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"u": _unpinned_entry(files)}))
    root = tmp_path / "stacks"
    with pytest.raises(ValueError, match="--unpinned"):
        download.install_stack(manifest["u"], root, fetch=_fake_hub(files))
    assert missing_stacks(manifest, ("u",), root) == ["u"]
    download.install_stack(manifest["u"], root, fetch=_fake_hub(files), allow_unpinned=True)
    assert missing_stacks(manifest, ("u",), root) == []
    assert hashlib.sha256(files["model.bin"]).hexdigest() in capsys.readouterr().out


def test_committed_unpinned_stacks_are_refused_without_the_flag(capsys):
    unpinned = [name for name, stack in load_manifest().items() if not stack.pinned]
    assert {"mvdream-sd21", "sd21-base"} <= set(unpinned)
    assert download.main(unpinned) == 2
    assert "--unpinned" in capsys.readouterr().err


def test_convert_hook_produces_the_installed_files(tmp_path):
    files = {"checkpoint.pt": b"ldm weights"}
    entry = _entry(files)
    entry.update(convert="tests.weights.test_manifest:_toy_convert", installed=["unet/weights.bin"])
    manifest = load_manifest(_write_manifest(tmp_path / "m.json", {"c": entry}))
    root = tmp_path / "stacks"
    download.install_stack(manifest["c"], root, fetch=_fake_hub(files))
    assert (root / "c" / "unet" / "weights.bin").read_bytes() == b"converted ldm weights"
    assert not (root / "c" / "checkpoint.pt").exists()
    assert missing_stacks(manifest, ("c",), root) == []
    download.install_stack(manifest["c"], root, fetch=_fake_hub({}))  # already converted: fetches nothing


def _toy_convert(folder: Path) -> None:
    (folder / "unet").mkdir()
    (folder / "unet" / "weights.bin").write_bytes(b"converted " + (folder / "checkpoint.pt").read_bytes())
    (folder / "checkpoint.pt").unlink()
