"""Bundle manifests and the search path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiogen_studio.engine import bundles


def make_bundle(root: Path, name: str, **overrides: object) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    data: dict[str, object] = {
        "format": 1,
        "name": name,
        "version": "1.0",
        "kind": "wavenet",
        "sample_rate": 16000,
        "components": {"wavenet": {"file": "wavenet.safetensors", "config": {}}},
    }
    data.update(overrides)
    (folder / "bundle.json").write_text(json.dumps(data))
    return folder


def test_read_and_component_paths(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "a")
    info = bundles.read_bundle(folder)
    assert (info.name, info.kind, info.sample_rate) == ("a", "wavenet", 16000)
    with pytest.raises(bundles.BundleError, match="missing weights"):
        info.component_path("wavenet")
    (folder / "wavenet.safetensors").write_bytes(b"x")
    assert info.component_path("wavenet").name == "wavenet.safetensors"
    with pytest.raises(bundles.BundleError, match="no component 'codec'"):
        info.component_path("codec")
    with pytest.raises(bundles.BundleError, match="is a wavenet bundle, expected audiolm"):
        info.require_kind("audiolm")


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    folder = make_bundle(
        tmp_path, "p", components={"wavenet": {"file": "wavenet.pt", "config": {}}}
    )
    (folder / "wavenet.pt").write_bytes(b"x")
    with pytest.raises(bundles.BundleError, match="not a .safetensors"):
        bundles.read_bundle(folder).component_path("wavenet")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"format": 99}, "format 99 is not supported"),
        ({"sample_rate": "fast"}, "sample_rate"),
        ({"components": []}, "components"),
        ({"generation": [0.5]}, "'generation' must be an object"),
    ],
)
def test_invalid_manifests(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(bundles.BundleError, match=message):
        bundles.read_bundle(make_bundle(tmp_path, "x", **overrides))


def test_missing_fields(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({"format": 1, "name": "m"}))
    with pytest.raises(bundles.BundleError, match="missing fields version, kind"):
        bundles.read_bundle(folder)


def test_search_order_env_first_and_shadowing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_bundle(first, "speech", version="2.0")
    make_bundle(second, "speech", version="1.0")
    make_bundle(second, "music")
    monkeypatch.setenv("AUDIOGEN_MODELS", f"{first}:{second}")
    paths = bundles.search_path()
    assert paths[:2] == [first, second]
    assert paths[-1] == bundles.shipped_models_dir()
    found = {b.name: b.version for b in bundles.list_bundles()}
    assert found["speech"] == "2.0" and "music" in found
    assert bundles.find_bundle("music").path == second / "music"
    assert bundles.find_bundle(str(second / "speech")).version == "1.0"
    with pytest.raises(bundles.BundleError, match="no model bundle named 'nope'"):
        bundles.find_bundle("nope")
