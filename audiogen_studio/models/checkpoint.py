"""Safetensors checkpoints that carry their config (never ``torch.load``, never pickle).

A module checkpoint is one ``.safetensors`` file: the module's ``state_dict()`` tensors plus
string metadata::

    "format": "audiogen-studio/checkpoint-1"
    "module": "WaveNet"                  # class name of the module that was saved
    "config": "{...}"                    # JSON of the config dataclass that rebuilds the module
    "extra":  "{...}"                    # optional JSON (training step, provenance, ...)

Nested state that is not a flat ``{name: tensor}`` mapping (an optimizer's ``state_dict()``) is
stored with :func:`save_tree`: its tensors go into the safetensors payload under dotted names and
everything else (ints, floats, strings, lists, dict keys of type int) into a JSON skeleton kept in
the metadata under ``"tree"``; :func:`load_tree` rebuilds the original structure exactly.

Every failure is a :class:`CheckpointError` (a ``ValueError``) naming the file and the problem.
Files are byte-reproducible: the same tensors and metadata always give the same bytes (the
safetensors writer orders the header's metadata by a random hash, so :func:`canonical_bytes`
rewrites that header with sorted keys).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from audiogen_studio.audio.errors import AudioError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CHECKPOINT_FORMAT = "audiogen-studio/checkpoint-1"
TREE_FORMAT = "audiogen-studio/tree-1"

_Config = TypeVar("_Config", bound="DataclassInstance")


class CheckpointError(AudioError, ValueError):
    """A checkpoint is missing, unreadable, not safetensors, or does not fit the model.

    The message names the file: ``"wavenet.safetensors: shape mismatch: layers.0.conv.weight
    is [32, 16, 3] in the file, [64, 32, 3] in the model"``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path.name}: {problem}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (or mapping) as a JSON-ready ``dict``."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        if hasattr(config, "to_dict"):
            return dict(config.to_dict())
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a dataclass instance or a mapping, got {type(config)!r}")


def config_from_dict(
    cls: type[_Config], data: Mapping[str, Any], what: str, *, article: str = "a"
) -> _Config:
    """Rebuild the config dataclass ``cls`` from its ``to_dict()`` output (the body of every
    model config's ``from_dict``); ``what`` names it in errors (``"codec config"``).

    Raises:
        ValueError: ``"a codec config must be a JSON object, got list"`` (``article`` as given),
            ``"unknown codec config keys: a, b"``, ``"bad codec config: ..."`` when a field
            is missing or the like (``TypeError``), or the dataclass's own ``ValueError``.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{article} {what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}")
    try:
        return cls(**dict(data))
    except TypeError as exc:
        raise ValueError(f"bad {what}: {exc}") from exc


def canonical_bytes(data: bytes) -> bytes:
    """The safetensors file ``data`` with its JSON header re-serialised with sorted keys.

    The header is ``u64 length`` + JSON (``{"__metadata__": {...}, name: {dtype, shape,
    data_offsets}}``) padded with spaces to a multiple of 8; the offsets count from the end of
    the header, so the tensor bytes are kept as they are.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    # a plain new file (honours the umask), unique per process and call
    tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    try:
        with tmp.open("wb") as f:
            f.write(canonical_bytes(save(tensors, metadata=metadata)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _plain(t: torch.Tensor) -> torch.Tensor:
    # safetensors wants contiguous CPU tensors that share no storage with each other.
    return t.detach().to("cpu").contiguous().clone()


def save_module(
    module: nn.Module,
    path: str | Path,
    config: Any,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module.state_dict()`` and its config to ``path`` (``.safetensors``), atomically.

    Args:
        module: the model; its tensors are stored as they are (dtype kept, moved to CPU).
        path: target file; must end in ``.safetensors``.
        config: the dataclass (or mapping) that rebuilds the module; stored as JSON.
        extra: more JSON-serialisable facts to keep beside it (``metadata["extra"]``).

    Returns:
        The path written.
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        raise CheckpointError(p, "checkpoint files must end in .safetensors")
    tensors = {name: _plain(t) for name, t in module.state_dict().items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "module": type(module).__name__,
        "config": json.dumps(config_to_dict(config), sort_keys=True),
    }
    if extra:
        metadata["extra"] = json.dumps(dict(extra), sort_keys=True)
    return _atomic_save(tensors, p, metadata)


def half_copy(source: str | Path, destination: str | Path) -> Path:
    """Copy a checkpoint with its float32 tensors stored as float16 (metadata kept), atomically.

    For shipping: the file is half the size, and loading upcasts (``load_state_dict`` copies into
    the module's float32 tensors), so the model computes in float32 with fp16-rounded weights
    (relative error <= 2**-11 per weight). Other dtypes (integer buffers, codes) are kept.
    """
    src, dst = Path(source), Path(destination)
    tensors, metadata = _read(src, "cpu")
    halved = {
        name: (t.to(torch.float16) if t.dtype == torch.float32 else t).contiguous()
        for name, t in tensors.items()
    }
    return _atomic_save(halved, dst, metadata)


def holds_float16_values(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point element of ``tensors`` is a float16 value (rounding to
    float16 loses nothing), as in a model loaded from a :func:`half_copy`."""
    for t in tensors:
        t = t.detach()
        if t.is_floating_point() and not torch.equal(t.to(torch.float16).to(t.dtype), t):
            return False
    return True


def round_to_float16_(module: nn.Module) -> None:
    """Round every floating-point parameter of ``module`` to the nearest float16 value, in
    place (dtype kept): what a :func:`half_copy` of its checkpoint would load back."""
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.copy_(p.to(torch.float16).to(p.dtype))


def _open_checked(p: Path) -> None:
    if not p.exists():
        raise CheckpointError(p, "file not found")
    if p.is_dir():
        raise CheckpointError(p, "is a directory, not a .safetensors file")


def _read(p: Path, device: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    _open_checked(p)
    try:
        with safe_open(str(p), framework="pt", device=str(device)) as f:
            raw_meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types and OSError
        raise CheckpointError(p, f"not a readable safetensors file ({exc})") from exc
    return tensors, dict(raw_meta)


def load_state(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint written by :func:`save_module`.

    Returns:
        ``(state_dict, metadata)``; ``metadata["config"]`` and ``metadata["extra"]`` are parsed
        JSON (``{}`` when absent); other metadata entries are strings.

    Raises:
        CheckpointError: missing or unreadable file, bad JSON in the metadata.
    """
    p = Path(path)
    tensors, raw = _read(p, device)
    meta: dict[str, Any] = dict(raw)
    for key in ("config", "extra"):
        text = raw.get(key)
        if text is None:
            meta[key] = {}
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(p, f"metadata '{key}' is not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise CheckpointError(p, f"metadata '{key}' must be a JSON object")
        meta[key] = value
    return tensors, meta


def check_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``module``'s tensors/shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems: list[str] = []
    if missing:
        problems.append("missing tensors " + ", ".join(missing[:6]) + (" ..." * (len(missing) > 6)))
    if unexpected:
        problems.append(
            "unexpected tensors " + ", ".join(unexpected[:6]) + (" ..." * (len(unexpected) > 6))
        )
    for name in sorted(set(own) & set(state)):
        if tuple(own[name].shape) != tuple(state[name].shape):
            problems.append(
                f"shape mismatch: {name} is {list(state[name].shape)} in the file, "
                f"{list(own[name].shape)} in the model"
            )
            if len(problems) > 6:
                break
    if problems:
        raise CheckpointError(path, "; ".join(problems))


def load_configured(
    path: str | Path,
    cls: Any,
    config_cls: Any,
    *,
    device: str | torch.device = "cpu",
    expected_config: Any = None,
) -> Any:
    """Rebuild ``cls(config)`` from a checkpoint that carries its config, in eval mode.

    ``cls.checkpoint_module`` names the module the file must hold; ``config_cls.from_dict``
    rebuilds the config; ``expected_config`` (a ``config_cls`` or a mapping, e.g. the config in
    ``bundle.json``), when given, must equal the stored one.

    Raises:
        CheckpointError: missing or unreadable file, another module's checkpoint, a missing,
            invalid or unexpected config, tensors that do not fit.
    """
    p = Path(path)
    state, meta = load_state(p)
    name = cls.checkpoint_module
    module = meta.get("module")
    if module not in (None, name):
        raise CheckpointError(p, f"holds a {module} checkpoint, not a {name}")
    if not meta["config"]:
        raise CheckpointError(p, f"no {name} config in the file's metadata")
    try:
        config = config_cls.from_dict(meta["config"])
    except ValueError as exc:
        raise CheckpointError(p, str(exc)) from exc
    if expected_config is not None:
        try:
            expected = (
                expected_config
                if isinstance(expected_config, config_cls)
                else config_cls.from_dict(expected_config)
            )
        except ValueError as exc:
            raise CheckpointError(p, f"expected config is invalid: {exc}") from exc
        if expected != config:
            want = expected.to_dict()
            diff = {k: (v, want[k]) for k, v in config.to_dict().items() if want[k] != v}
            raise CheckpointError(p, f"config differs from the expected one: {diff}")
    model = cls(config)
    check_state_dict(model, state, p)
    model.load_state_dict(state)
    return model.to(device).eval()


def load_into(
    module: nn.Module, path: str | Path, *, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint's tensors into ``module`` (strict); returns the metadata."""
    state, meta = load_state(path, device=device)
    check_state_dict(module, state, path)
    module.load_state_dict(state)
    return meta


# --- nested state (optimizer) -----------------------------------------------------------------


def _encode(obj: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[name] = _plain(obj)
        return {"__tensor__": name}
    if isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise TypeError(f"{name}: dict keys must be str or int, got {type(key)!r}")
            items.append([key, _encode(value, f"{name}.{key}" if name else str(key), tensors)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{name}: cannot store a {type(obj).__name__} in a checkpoint tree")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], p: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, p) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(p, f"tree refers to missing tensor {key}")
            return tensors[key]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors, p) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: _decode(v, tensors, p) for k, v in obj["__dict__"]}
        raise CheckpointError(p, "malformed tree skeleton")
    return obj


def save_tree(tree: Any, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Store a nested structure of dicts/lists/tuples/scalars/tensors (an optimizer state).

    Tensors go into the safetensors payload, the rest into ``metadata["tree"]`` (JSON).
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        raise CheckpointError(p, "checkpoint files must end in .safetensors")
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(tree, "", tensors)
    metadata = {"format": TREE_FORMAT, "tree": json.dumps(skeleton)}
    if extra:
        metadata["extra"] = json.dumps(dict(extra), sort_keys=True)
    return _atomic_save(tensors, p, metadata)


def load_tree(path: str | Path, *, device: str | torch.device = "cpu") -> Any:
    """The structure stored by :func:`save_tree`."""
    p = Path(path)
    tensors, raw = _read(p, device)
    if raw.get("format") != TREE_FORMAT or "tree" not in raw:
        raise CheckpointError(p, "not a checkpoint tree (no 'tree' metadata)")
    try:
        skeleton = json.loads(raw["tree"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(p, f"metadata 'tree' is not valid JSON ({exc})") from exc
    return _decode(skeleton, tensors, p)
