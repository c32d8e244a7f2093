"""Model bundles and the registry that finds them (DESIGN.md §4).

A bundle is a folder ``<name>/`` holding ``bundle.json`` and ``*.safetensors`` weights::

    {
      "format": 1,                      # bundle format version this code understands
      "name": "speech", "version": "1.0.0",
      "kind": "audiolm" | "wavenet" | "wavenet-vocoder" | ...,
      "sample_rate": 16000,
      "components": {"codec": {"file": "codec.safetensors", "config": {...}}, ...},
      "training": {...}, "metrics": {...}, "description": "...",
      "generation": {"stage_temperatures": {"semantic": 0.9, "coarse": 0.8, "fine": 0.5}}
    }

``generation`` (optional) holds the bundle's tuned sampling defaults: per-stage factors that
multiply a request's temperature (:class:`~audiogen_studio.engine.api.GenerationRequest`), and
for AudioLM bundles ``decode_quantizers``: how many codec quantizers generated audio is decoded
from (:class:`~audiogen_studio.engine.audiolm_pipeline.AudioLMEngine`).

Search path, first match of a name wins: ``$AUDIOGEN_MODELS`` (``os.pathsep``-separated), the
user data directory (platformdirs), then the shipped ``models/`` folder of a checkout or wheel.
Loading never unpickles: weights are safetensors, everything else JSON.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from audiogen_studio.audio.errors import AudioError

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"
APP_NAME = "audiogen-studio"


class BundleError(AudioError):
    """A bundle is missing, malformed, of the wrong kind, or from an unknown format version."""


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What ``bundle.json`` says about a bundle, plus where it lives."""

    path: Path
    name: str
    version: str
    kind: str
    sample_rate: int
    components: Mapping[str, Any]
    description: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    generation: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """Bytes of every file in the bundle folder."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def component_path(self, component: str) -> Path:
        """Weights file of ``component``; a :class:`BundleError` if it is not declared or absent."""
        try:
            file = self.components[component]["file"]
        except (KeyError, TypeError) as exc:
            raise BundleError(f"bundle '{self.name}' has no component '{component}'") from exc
        path = self.path / str(file)
        if path.suffix != ".safetensors":
            raise BundleError(f"bundle '{self.name}': {file} is not a .safetensors file")
        if not path.is_file():
            raise BundleError(f"bundle '{self.name}': missing weights file {file}")
        return path

    def require_kind(self, *kinds: str) -> None:
        """Raise a clear error unless this bundle is one of ``kinds``."""
        if self.kind not in kinds:
            wanted = " or ".join(kinds)
            raise BundleError(f"bundle '{self.name}' is a {self.kind} bundle, expected {wanted}")


def shipped_models_dir() -> Path:
    """The ``models/`` folder of the checkout (or installed data) holding the default bundles
    (``$AUDIOGEN_SHIPPED_MODELS`` overrides it, e.g. for packaging or tests)."""
    override = os.environ.get("AUDIOGEN_SHIPPED_MODELS")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2] / "models"


def user_models_dir() -> Path:
    """Per-user folder for downloaded-by-hand or user-trained bundles."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def search_path() -> list[Path]:
    """Folders searched for bundles, in priority order."""
    paths: list[Path] = []
    env = os.environ.get("AUDIOGEN_MODELS", "")
    paths.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    paths.append(user_models_dir())
    paths.append(shipped_models_dir())
    return paths


def read_bundle(path: str | Path) -> BundleInfo:
    """Parse and validate ``path/bundle.json``.

    Raises:
        BundleError: missing file, invalid JSON, unknown format version, missing fields.
    """
    folder = Path(path)
    manifest = folder / BUNDLE_FILE
    if not manifest.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {BUNDLE_FILE})")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest}: unreadable bundle manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{manifest}: bundle manifest must be a JSON object")
    fmt = data.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"{manifest}: bundle format {fmt!r} is not supported "
            f"(this version reads {BUNDLE_FORMAT})"
        )
    missing = [k for k in ("name", "version", "kind", "sample_rate", "components") if k not in data]
    if missing:
        raise BundleError(f"{manifest}: missing fields {', '.join(missing)}")
    if not isinstance(data["components"], dict):
        raise BundleError(f"{manifest}: 'components' must be an object")
    if not isinstance(data.get("generation", {}) or {}, dict):
        raise BundleError(f"{manifest}: 'generation' must be an object")
    try:
        rate = int(data["sample_rate"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{manifest}: sample_rate must be an integer") from exc
    return BundleInfo(
        path=folder,
        name=str(data["name"]),
        version=str(data["version"]),
        kind=str(data["kind"]),
        sample_rate=rate,
        components=data["components"],
        description=str(data.get("description", "")),
        metrics=data.get("metrics", {}) or {},
        training=data.get("training", {}) or {},
        generation=data.get("generation", {}) or {},
    )


@dataclass(frozen=True, slots=True)
class BrokenBundle:
    """A folder that looks like a bundle but could not be read, and why."""

    path: Path
    reason: str


def discover(paths: list[Path] | None = None) -> Iterator[BundleInfo | BrokenBundle]:
    """Every bundle folder in the search path (earlier folders shadow later ones by name)."""
    seen: set[str] = set()
    for root in search_path() if paths is None else paths:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / BUNDLE_FILE).is_file()):
            try:
                info = read_bundle(folder)
            except BundleError as exc:
                yield BrokenBundle(folder, str(exc))
                continue
            if info.name in seen:
                log.debug("bundle %s at %s is shadowed", info.name, folder)
                continue
            seen.add(info.name)
            yield info


def list_bundles(paths: list[Path] | None = None) -> list[BundleInfo]:
    """The readable bundles in the search path."""
    return [b for b in discover(paths) if isinstance(b, BundleInfo)]


def find_bundle(name_or_path: str | Path, paths: list[Path] | None = None) -> BundleInfo:
    """A bundle by name (searched) or by folder path.

    Raises:
        BundleError: nothing by that name, listing the names that exist.
    """
    candidate = Path(name_or_path)
    if (candidate / BUNDLE_FILE).is_file():
        return read_bundle(candidate)
    for bundle in list_bundles(paths):
        if bundle.name == str(name_or_path):
            return bundle
    names = ", ".join(b.name for b in list_bundles(paths)) or "none installed"
    raise BundleError(f"no model bundle named '{name_or_path}' (available: {names})")


def write_component(
    bundle_dir: str | Path,
    component: str,
    *,
    file: str,
    config: Mapping[str, Any],
    kind: str = "audiolm",
    sample_rate: int,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    description: str | None = None,
    component_kind: str | None = None,
) -> Path:
    """Create or update ``bundle_dir/bundle.json`` so that it declares ``component``.

    Multi-stage bundles (AudioLM: ``codec``, ``semantic``, ``lm_semantic``, ``lm_coarse``,
    ``lm_fine``) are trained one stage at a time into one folder; each stage calls this when its
    weights ``file`` are written. Training provenance and metrics are kept per component
    (``training[component]``, ``metrics[component]``). The manifest is rewritten atomically.
    ``component_kind`` is recorded as the entry's ``kind`` (e.g. the codec's: ``"mel"``, see
    ``models/acoustic_codec.py``; an entry without one is a SoundStream codec).

    Raises:
        BundleError: an existing manifest of another kind or sample rate, or an unreadable one.
    """
    folder = Path(bundle_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / BUNDLE_FILE
    if manifest.is_file():
        info = read_bundle(folder)
        if info.kind != kind:
            raise BundleError(f"{folder}: a {info.kind} bundle, cannot add a {kind} component")
        if info.sample_rate != int(sample_rate):
            raise BundleError(
                f"{folder}: the bundle is at {info.sample_rate} Hz, the {component} at "
                f"{sample_rate} Hz"
            )
        data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    else:
        data = {
            "format": BUNDLE_FORMAT,
            "name": name or folder.resolve().name,
            "version": version,
            "kind": kind,
            "sample_rate": int(sample_rate),
            "description": "",
            "components": {},
            "training": {},
            "metrics": {},
        }
    if name:
        data["name"] = name
    data["components"][component] = {"file": file, "config": dict(config)}
    if component_kind is not None:
        data["components"][component]["kind"] = component_kind
    data.setdefault("training", {})[component] = dict(training or {})
    data.setdefault("metrics", {})[component] = dict(metrics or {})
    if description is not None:
        data["description"] = description
    return write_manifest(folder, data)


def write_manifest(bundle_dir: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as ``bundle_dir/bundle.json`` atomically (temp file + ``os.replace``)."""
    manifest = Path(bundle_dir) / BUNDLE_FILE
    tmp = manifest.with_name(f".{BUNDLE_FILE}.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, manifest)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest
