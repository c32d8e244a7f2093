"""Model cards: a bundle's ``README.md`` rendered from its ``bundle.json`` (issue 6, item 3).

A bundle already records, per component, its training provenance (``training[component]``: data,
hours, steps, seconds, device, ...) and validation metrics (``metrics[component]``). The quality
evaluation (``audiogen-studio eval``) adds ``metrics["quality"]``: a mapping of figure name to
``{"value": float | None, "target": str, "met": bool | None, "note": str}``. This module

- updates the bundle-level fields (``version``, ``description``) and named metric sections of a
  ``bundle.json`` atomically (:func:`update_bundle`), and
- renders the card (:func:`render_model_card`) and writes it beside the manifest
  (:func:`write_model_card`), so a card is never edited by hand and never disagrees with the
  figures the bundle carries.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from audiogen_studio.engine.adaptation_settings import AdaptationSettings
from audiogen_studio.engine.api import (
    CHOOSE_AFTER_RANGE,
    CONTEXT_SLIDES,
    DEFAULT_CHOOSE_AFTER,
    MAX_CANDIDATES,
    GenerationError,
    check_stage_temperatures,
)
from audiogen_studio.engine.beat_guidance import BeatGuidanceSettings
from audiogen_studio.engine.bundles import (
    BUNDLE_FILE,
    BundleError,
    BundleInfo,
    read_bundle,
    write_manifest,
)
from audiogen_studio.engine.level_match import LevelMatchSettings
from audiogen_studio.engine.take_ranking import ASPECTS
from audiogen_studio.models.checkpoint import canonical_bytes, half_copy

__all__ = [
    "CARD_FILE",
    "pack_bundle",
    "quality_figures",
    "render_model_card",
    "shipped_bytes",
    "shipped_files",
    "update_bundle",
    "write_model_card",
]

CARD_FILE = "README.md"

# Provenance keys shown in the training table, in this order, with their headings.
# A column shows the first key of its tuple that a component's provenance has.
_TRAINING_COLUMNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("steps",), "steps"),
    (("hours", "train_hours"), "train hours"),
    (("valid_hours",), "valid hours"),
    (("time_seconds",), "wall time"),
    (("device",), "device"),
    (("world_size",), "processes"),
    (("completed",), "completed"),
)


def shipped_files(info: BundleInfo) -> list[Path]:
    """The files a bundle needs at run time: ``bundle.json`` and every declared weights file."""
    files = [info.path / BUNDLE_FILE]
    for component in info.components:
        files.append(info.component_path(component))
    return files


def shipped_bytes(info: BundleInfo) -> int:
    """Bytes of :func:`shipped_files` (training checkpoints and caches not counted)."""
    return sum(p.stat().st_size for p in shipped_files(info))


def pack_bundle(source: str | Path, destination: str | Path, *, half: bool = False) -> Path:
    """Copy a trained bundle's run-time files (no checkpoints, no token caches) plus a fresh card.

    ``destination`` is created (its parent must exist); weights files it holds that the bundle
    does not ship are removed, so a re-pack never leaves stale files. A weights file whose
    content is unchanged (the same tensors and metadata, compared through
    :func:`~audiogen_studio.models.checkpoint.canonical_bytes`) is left as it is, so re-packing
    a bundle of which one component changed rewrites that file alone (in git: one new blob, not
    one per file). ``half`` stores float32 weights as float16
    (:func:`~audiogen_studio.models.checkpoint.half_copy`: half the size, upcast on load).
    Returns the destination folder.
    """
    info = read_bundle(source)
    dest = Path(destination)
    if dest.resolve() == info.path.resolve():
        raise BundleError("pack needs a destination other than the bundle itself")
    dest.mkdir(exist_ok=True)
    files = shipped_files(info)
    names = {path.name for path in files}
    for old in dest.glob("*.safetensors"):
        if old.name not in names:
            old.unlink()
    (dest / CARD_FILE).unlink(missing_ok=True)
    for path in files:
        target = dest / path.name
        tmp = dest / f".{path.name}.partial"
        if half and path.suffix == ".safetensors":
            half_copy(path, tmp)
        else:
            shutil.copyfile(path, tmp)
        if _same_content(tmp, target):
            tmp.unlink()
        else:
            os.replace(tmp, target)
    write_model_card(dest)
    return dest


def _same_content(new: Path, old: Path) -> bool:
    """Whether ``old`` exists and holds what ``new`` (its ``.partial`` replacement) holds; for
    ``.safetensors`` files the same tensors and metadata, in whatever order the header lists
    the metadata."""
    if not old.is_file():
        return False
    a, b = new.read_bytes(), old.read_bytes()
    if old.suffix != ".safetensors":
        return a == b
    try:
        return canonical_bytes(a) == canonical_bytes(b)
    except (ValueError, struct.error):  # not a readable safetensors header: rewrite it
        return False


#: the ``metrics`` section of a quality report made with ``--best-of N`` (N > 1)
BEST_OF_SECTION = "quality_best_of"
#: the ``metrics`` section of a quality report made with ``--candidates N`` (N > 1)
CANDIDATES_SECTION = "quality_candidates"


def quality_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a quality report (``benchmarks/quality.py`` or ``audiogen-studio eval ... -o``)
    into the ``metrics["quality"]`` section a card shows.

    Figures are the report's ``{"value", "stderr", "target", "met", "takes_meeting", "note"}``
    mappings (the standard error over the takes and the share of takes that meet the target on
    their own, where the report has them), named by their
    path (``codec.pesq_wb``, ``speech_continuation.model.speaker_cosine``, ...); plain numbers
    under a figure group (e.g. ``codec.opus_same.pesq_wb``) are kept as reference values. Lists
    (per-clip details) and run settings are left out; ``_measured_with`` and ``_machine`` are
    copied when the report has them.
    """
    figures: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                if "value" in value and not isinstance(value["value"], Mapping):
                    figures[name] = {
                        k: value[k]
                        for k in ("value", "stderr", "target", "met", "takes_meeting", "note")
                        if k in value
                    }
                else:
                    walk(value, f"{name}.")
            elif isinstance(value, int | float) and not isinstance(value, bool) and prefix:
                figures[name] = {"value": value}

    skip = {"settings", "machine", "benchmark", "bundle", "split"}
    walk({k: v for k, v in report.items() if k not in skip}, "")
    if "_measured_with" in report:
        figures["_measured_with"] = report["_measured_with"]
    machine = report.get("machine")
    if isinstance(machine, Mapping):
        figures["_machine"] = dict(machine)
    settings = report.get("settings")
    if isinstance(settings, Mapping) and int(settings.get("best_of") or 1) > 1:
        figures["_best_of"] = int(settings["best_of"])
        figures["_rank_by"] = settings.get("rank_by")
    if isinstance(settings, Mapping) and int(settings.get("candidates") or 1) > 1:
        figures["_candidates"] = int(settings["candidates"])
        figures["_choose_after"] = settings.get("choose_after")
    return figures


def update_bundle(
    bundle_dir: str | Path,
    *,
    version: str | None = None,
    description: str | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    stage_temperatures: Mapping[str, float] | None = None,
    decode_quantizers: int | None = None,
    adaptation: Mapping[str, Any] | None = None,
    coarse_guidance: float | None = None,
    semantic_cache: float | None = None,
    rank_by: str | None = None,
    candidates: int | None = None,
    choose_after: float | None = None,
    level_match: bool | None = None,
    context_slide: str | None = None,
    beat_guidance: Mapping[str, Any] | bool | None = None,
) -> BundleInfo:
    """Set ``version`` / ``description`` and merge ``metrics`` sections into ``bundle.json``.

    ``metrics`` maps a section name (e.g. ``"quality"``) to a mapping that *replaces* that
    section. ``stage_temperatures`` replaces the AudioLM bundle's tuned sampling defaults
    (``generation.stage_temperatures``; an empty mapping removes them).
    ``decode_quantizers`` sets how many codec quantizers its generated audio is decoded from
    (``generation.decode_quantizers``; 0 removes it: all of them). ``adaptation`` replaces
    its prompt adaptation defaults (``generation.adaptation``, checked as
    :class:`~audiogen_studio.engine.prompt_adaptation.AdaptationSettings`; an empty mapping
    removes them). ``coarse_guidance`` sets the coarse stage's classifier-free guidance scale
    (``generation.coarse_guidance``; 1 removes it: no guidance); ``semantic_cache`` the weight
    of the prompt's token frequencies in the semantic stage (``generation.semantic_cache``,
    in ``[0, 1)``; 0 removes it). ``rank_by`` what its takes are ranked by against the prompt
    (``generation.rank_by``: ``"voice"`` or ``"pitch"``,
    :mod:`~audiogen_studio.engine.take_ranking`; ``""`` removes it); ``candidates`` a
    continuation bundle's default candidate beginnings per take (``generation.candidates``,
    1..8; 1 removes it) and ``choose_after`` the seconds generated before one is kept
    (``generation.choose_after``, 0.5..60). ``level_match`` turns on or off keeping an
    AudioLM bundle's continuations at their prompt's level (``generation.level_match``,
    :mod:`~audiogen_studio.engine.level_match`; off removes it). ``context_slide`` how its
    streams slide a full context (``generation.context_slide``: ``"evict"``, or ``"refill"``,
    the default, which removes it). ``beat_guidance`` steers a music bundle's semantic stage
    onto the prompt's beat (``generation.beat_guidance``: true, false, which removes it, or the
    settings of :class:`~audiogen_studio.engine.beat_guidance.BeatGuidanceSettings`; checked
    against the bundle's tokenizer when it loads). The manifest is rewritten
    atomically (temp file + ``os.replace``).

    Raises:
        BundleError: no readable bundle at ``bundle_dir``, or stage temperatures or decode
            quantizers for a bundle that is not an AudioLM bundle or that are out of range.
    """
    folder = Path(bundle_dir)
    info = read_bundle(folder)  # validates format, kind and components
    manifest = folder / BUNDLE_FILE
    data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    if version is not None:
        if not version.strip():
            raise BundleError("a bundle version cannot be empty")
        data["version"] = version
    if description is not None:
        data["description"] = description
    if metrics:
        section = data.setdefault("metrics", {})
        for name, values in metrics.items():
            section[name] = json.loads(json.dumps(dict(values)))  # JSON-clean copy
    if stage_temperatures is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no token stages")
        try:
            factors = check_stage_temperatures(stage_temperatures)
        except GenerationError as exc:
            raise BundleError(str(exc)) from exc
        generation = data.setdefault("generation", {})
        if factors:
            generation["stage_temperatures"] = factors
        else:
            generation.pop("stage_temperatures", None)
    if decode_quantizers is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no codec tokens")
        top = _layout_quantizers(info)
        if not 0 <= decode_quantizers <= top:
            raise BundleError(
                f"decode quantizers must be within 1..{top} (0: all), got {decode_quantizers}"
            )
        generation = data.setdefault("generation", {})
        if decode_quantizers:
            generation["decode_quantizers"] = int(decode_quantizers)
        else:
            generation.pop("decode_quantizers", None)
    if adaptation is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no LMs to adapt")
        generation = data.setdefault("generation", {})
        if adaptation:
            try:
                generation["adaptation"] = AdaptationSettings.from_dict(adaptation).to_dict()
            except GenerationError as exc:
                raise BundleError(str(exc)) from exc
        else:
            generation.pop("adaptation", None)
    if coarse_guidance is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no coarse stage")
        if not (math.isfinite(coarse_guidance) and coarse_guidance >= 0):
            raise BundleError(f"coarse guidance must be >= 0, got {coarse_guidance}")
        generation = data.setdefault("generation", {})
        if coarse_guidance == 1.0:
            generation.pop("coarse_guidance", None)
        else:
            generation["coarse_guidance"] = float(coarse_guidance)
    if semantic_cache is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no semantic stage")
        if not 0.0 <= semantic_cache < 1.0:
            raise BundleError(f"semantic cache must be in [0, 1), got {semantic_cache}")
        generation = data.setdefault("generation", {})
        if semantic_cache:
            generation["semantic_cache"] = float(semantic_cache)
        else:
            generation.pop("semantic_cache", None)
    if rank_by is not None:
        if rank_by and rank_by not in ASPECTS:
            raise BundleError(f"rank_by must be {' or '.join(ASPECTS)}, got {rank_by!r}")
        if rank_by and info.kind == "wavenet-vocoder":
            raise BundleError(f"bundle '{info.name}' is a vocoder: it makes no takes to rank")
        generation = data.setdefault("generation", {})
        if rank_by:
            generation["rank_by"] = rank_by
        else:
            generation.pop("rank_by", None)
    if candidates is not None or choose_after is not None:
        if info.kind not in ("audiolm", "wavenet"):
            raise BundleError(
                f"bundle '{info.name}' is a {info.kind} bundle: only continuation bundles "
                "choose among candidate beginnings"
            )
        generation = data.setdefault("generation", {})
        if candidates is not None:
            if not 1 <= candidates <= MAX_CANDIDATES:
                raise BundleError(f"candidates must be 1..{MAX_CANDIDATES}, got {candidates}")
            if candidates > 1 and generation.get("rank_by") not in ASPECTS:
                raise BundleError(
                    "candidates > 1 needs rank_by (voice, pitch, rhythm or pitch+rhythm) first"
                )
            if candidates > 1:
                generation["candidates"] = int(candidates)
            else:
                generation.pop("candidates", None)
        if choose_after is not None:
            lo, hi = CHOOSE_AFTER_RANGE
            if not (math.isfinite(choose_after) and lo <= choose_after <= hi):
                raise BundleError(f"choose_after must be {lo:g}..{hi:g} s, got {choose_after}")
            generation["choose_after"] = float(choose_after)
    if level_match is not None:
        if info.kind != "audiolm":
            raise BundleError(
                f"bundle '{info.name}' is a {info.kind} bundle: only token models' "
                "continuations are matched to the prompt's level"
            )
        generation = data.setdefault("generation", {})
        if level_match:
            generation["level_match"] = True
        else:
            generation.pop("level_match", None)
    if beat_guidance is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no semantic stage")
        generation = data.setdefault("generation", {})
        try:
            settings = BeatGuidanceSettings.from_generation({"beat_guidance": beat_guidance})
        except GenerationError as exc:
            raise BundleError(str(exc)) from exc
        if settings.enabled:
            generation["beat_guidance"] = settings.to_dict()
        else:
            generation.pop("beat_guidance", None)
    if context_slide is not None:
        if info.kind != "audiolm":
            raise BundleError(f"bundle '{info.name}' is a {info.kind} bundle: no token streams")
        if context_slide not in CONTEXT_SLIDES:
            raise BundleError(
                f"context slide must be {' or '.join(CONTEXT_SLIDES)}, got {context_slide!r}"
            )
        generation = data.setdefault("generation", {})
        if context_slide == "refill":
            generation.pop("context_slide", None)
        else:
            generation["context_slide"] = context_slide
    if not data.get("generation", True):
        del data["generation"]
    write_manifest(folder, data)
    return read_bundle(folder)


def _adaptation_lines(raw: Any) -> list[str]:
    """The card's "Prompt adaptation" section for ``generation.adaptation`` (none when off)."""
    if not isinstance(raw, Mapping):
        return []
    try:
        settings = AdaptationSettings.from_dict(raw)
    except GenerationError:
        return []
    if not settings.enabled:
        return []
    window = "the LM's context" if settings.seconds is None else f"{_fmt(settings.seconds)} s"
    windows = (
        f"one window of {window} at its end"
        if settings.windows == 1
        else f"{settings.windows} windows of {window} each"
    )
    n = settings.blocks
    trained = "" if n is None else f", training its top {n} block{'s' * (n > 1)} only"
    mixed = (
        ""
        if settings.mix == 1
        else f"{',' if trained else ''} and then keeps {_fmt(settings.mix)} of the change to its "
        "weights (WiSE-FT)"
    )
    return [
        "",
        "## Prompt adaptation",
        "",
        f"Before generating, a copy of the {' and '.join(settings.stages)} LM takes "
        f"{settings.steps} Adam steps (rate {_fmt(settings.lr)}) on the prompt's own tokens "
        f"({windows}){trained}{mixed}, once per prompt (`generation.adaptation`; "
        "`--adapt-steps N` overrides the steps, 0 turns it off; the real-time factors below "
        "include it).",
    ]


def _layout_quantizers(info: BundleInfo) -> int:
    """Codec quantizers the AudioLM bundle's LMs model (coarse + fine), from their layout."""
    for component in ("lm_coarse", "lm_fine", "lm_semantic"):
        layout = info.components.get(component, {}).get("config", {}).get("layout")
        if isinstance(layout, Mapping):
            return int(layout["coarse_quantizers"]) + int(layout["fine_quantizers"])
    raise BundleError(f"bundle '{info.name}' has no trained LM yet: no token layout")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return _fmt(seconds)
    minutes = seconds / 60.0
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _component_parameters(metrics: Mapping[str, Any]) -> Any:
    for key in ("parameters", "params", "num_parameters"):
        if key in metrics:
            return metrics[key]
    return None


def _quality_lines(quality: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, entry in quality.items():
        if name.startswith("_"):
            continue
        if isinstance(entry, Mapping):
            met = entry.get("met")
            verdict = "met" if met is True else "not met" if met is False else "—"
            share = entry.get("takes_meeting")
            if met is not None and isinstance(share, int | float) and not isinstance(share, bool):
                verdict += f" ({share:.0%} of the takes do)"  # a mean can meet what few takes do
            measured = _fmt(entry.get("value"))
            if entry.get("stderr") is not None and entry.get("value") is not None:
                measured += f" ± {_fmt(entry['stderr'])}"
            rows.append(
                [
                    name,
                    measured,
                    _fmt(entry.get("target", "")),
                    verdict,
                    _fmt(entry.get("note", "")),
                ]
            )
        else:
            rows.append([name, _fmt(entry), "", "—", ""])
    lines = _table(["figure", "measured", "target", "", "how"], rows)
    how = quality.get("_measured_with")
    if how:
        lines += ["", f"Measured with `{how}`."]
    return lines


def _per_component(table: Mapping[str, Any], components: Iterable[str]) -> dict[str, Any]:
    """``training`` / ``metrics`` keyed by component. Single-component bundles (WaveNet) keep
    them flat (``{"steps": ...}``): their plain values are filed under that component, and
    nested tables (``metrics["quality"]``) stay where they are."""
    names = list(components)
    flat = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if not flat or len(names) != 1:
        return dict(table)
    nested = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    return {names[0]: {**flat, **nested.pop(names[0], {})}, **nested}


def render_model_card(info: BundleInfo) -> str:
    """The Markdown card of a bundle: what it is, its data and training, its measured figures."""
    training = _per_component(info.training, info.components)
    metrics = _per_component(info.metrics, info.components)
    lines = [f"# {info.name} {info.version}", ""]
    lines += [
        f"Kind **{info.kind}**, {info.sample_rate} Hz, {shipped_bytes(info) / 1e6:.1f} MB of "
        "weights and manifest. "
        "This card is generated from `bundle.json` by `audiogen-studio models card`; "
        "edit the bundle, not the card.",
        "",
    ]
    if info.description:
        lines += [info.description, ""]

    lines += ["## Components", ""]
    rows = []
    for component, spec in info.components.items():
        file = spec.get("file", "") if isinstance(spec, Mapping) else ""
        path = info.path / file if file else None
        size = path.stat().st_size / 1e6 if path is not None and path.is_file() else None
        params = _component_parameters(metrics.get(component, {}) or {})
        rows.append(
            [
                component,
                f"`{file}`" if file else "—",
                f"{size:.1f} MB" if size is not None else "—",
                _fmt(params),
            ]
        )
    lines += _table(["component", "weights", "size", "parameters"], rows)

    if training:
        lines += ["", "## Training", ""]
        present = [
            (keys, title)
            for keys, title in _TRAINING_COLUMNS
            if any(isinstance(t, Mapping) and any(k in t for k in keys) for t in training.values())
        ]
        rows = []
        data_sources: dict[str, list[str]] = {}
        starts: dict[str, list[str]] = {}
        for component, prov in training.items():
            if not isinstance(prov, Mapping):
                continue
            row = [component]
            for keys, _ in present:
                value = next((prov[k] for k in keys if k in prov), None)
                row.append(_duration(value) if keys == ("time_seconds",) else _fmt(value))
            rows.append(row)
            if prov.get("data"):
                data_sources.setdefault(str(prov["data"]), []).append(component)
            start = prov.get("init_from") or prov.get("init_decoder")
            if start:
                starts.setdefault(str(start), []).append(component)
        lines += _table(["component", *(title for _, title in present)], rows)
        if data_sources:
            lines += ["", "Training data:"]
            lines += [
                f"- `{source}`: {', '.join(components)}"
                for source, components in data_sources.items()
            ]
        if starts:
            lines += ["", "Fine-tuned from (weights that started the run):"]
            lines += [f"- `{source}`: {', '.join(names)}" for source, names in starts.items()]

    factors = info.generation.get("stage_temperatures")
    if isinstance(factors, Mapping) and factors:
        shown = ", ".join(f"{stage} × {_fmt(value)}" for stage, value in factors.items())
        lines += [
            "",
            "## Sampling defaults",
            "",
            f"Per-stage temperature factors: {shown} (each multiplies the request's "
            "temperature; `--stage-temperatures` overrides them).",
        ]
    kq = info.generation.get("decode_quantizers")
    if isinstance(kq, int) and not isinstance(kq, bool):
        if not (isinstance(factors, Mapping) and factors):
            lines += ["", "## Sampling defaults", ""]
        lines += [
            "",
            f"Generated audio is decoded from the codec's first {kq} quantizers "
            "(`generation.decode_quantizers`): the LMs' other codes are not used.",
        ]
    guidance = info.generation.get("coarse_guidance")
    if isinstance(guidance, int | float) and not isinstance(guidance, bool) and guidance != 1:
        lines += [
            "",
            f"The coarse stage samples with classifier-free guidance at scale {_fmt(guidance)} "
            "(`generation.coarse_guidance`): logits `u + scale·(c − u)` of the coarse LM with "
            "(`c`) and without (`u`) its semantic tokens, so the codes follow the semantic "
            "tokens more closely; the coarse LM runs on two rows for it.",
        ]
    cache = info.generation.get("semantic_cache")
    if isinstance(cache, int | float) and not isinstance(cache, bool) and cache:
        lines += [
            "",
            f"The semantic stage draws from the LM's distribution mixed with {_fmt(cache)} of "
            "the prompt's own semantic-token frequencies (`generation.semantic_cache`, a cache "
            "language model), which keeps the continuation among the prompt's tokens.",
        ]
    if info.generation.get("context_slide") == "evict":
        lines += [
            "",
            "When a stage's context is full it slides by dropping the older half of its KV "
            "cache and keeping the rest (`generation.context_slide` = evict, "
            "`TokenLM.evict`): no forward pass over the kept half, unlike re-running it, so the "
            "kept positions still carry what they attended to before the slide.",
        ]
    try:
        matching = LevelMatchSettings.from_generation(info.generation)
    except GenerationError:
        matching = LevelMatchSettings()
    if matching.enabled:
        lines += [
            "",
            "Each take is kept at its prompt's level (`generation.level_match`, "
            "`engine/level_match.py`): every generated window is scaled so that the "
            "continuation's mean power so far equals the prompt's over its last "
            f"{_fmt(matching.reference_seconds)} s, within ±{_fmt(matching.max_db)} dB, the gain "
            "moving smoothly from window to window (`continue --no-level-match` turns it off).",
        ]

    try:
        beat = BeatGuidanceSettings.from_generation(info.generation)
    except GenerationError:
        beat = BeatGuidanceSettings()
    if beat.enabled:
        lines += [
            "",
            "The semantic stage keeps to the prompt's beat (`generation.beat_guidance`, "
            "`engine/beat_guidance.py`): the prompt's tempo and phase are estimated from its "
            "onsets, and while the semantic LM samples, each token's logit moves by "
            f"{_fmt(beat.strength)} × its onset strength (standardised) × (a Gaussian window of "
            f"{_fmt(beat.width_seconds * 1000)} ms around each beat − {_fmt(beat.off_beat)}), so "
            "attacks land on the beat (`continue --no-beat-guidance` turns it off).",
        ]

    lines += _adaptation_lines(info.generation.get("adaptation"))
    aspect = info.generation.get("rank_by")
    if aspect in ASPECTS:
        what = {
            "voice": "the long-term spectrum of its voice",
            "pitch": "the pitch-class profile (key and harmony)",
            "rhythm": "the periodicity of its onsets (rhythm)",
            "pitch+rhythm": "the pitch-class profile and the periodicity of its onsets",
        }[aspect]
        lines += [
            "",
            "## Best of N takes",
            "",
            f"Takes are ranked by how well each continuation matches its prompt in {what} "
            f"(`generation.rank_by` = {aspect}, `engine/take_ranking.py`): `continue --takes K "
            "--best-of N` generates N takes together and keeps the K best, and the app marks "
            "each take's rank.",
        ]
        n = info.generation.get("candidates", 1)
        if info.kind in ("audiolm", "wavenet"):
            after = _fmt(float(info.generation.get("choose_after", DEFAULT_CHOOSE_AFTER)))
            lines += [
                "",
                (
                    f"Each take starts as {n} candidate beginnings generated together; after "
                    f"{after} s the one that matches the prompt best is kept and goes on alone "
                    "(`generation.candidates`, `generation.choose_after`; `--candidates N` "
                    "overrides, 1 turns it off; the real-time factors below include it)."
                )
                if isinstance(n, int) and n > 1
                else (
                    "`continue --candidates N` generates N beginnings of each take together "
                    f"and keeps the best after {after} s (`generation.choose_after`); by "
                    "default each take has one."
                ),
            ]

    quality = metrics.get("quality")
    if isinstance(quality, Mapping) and quality:
        lines += ["", "## Measured quality (held-out audio)", ""]
        lines += _quality_lines(quality)
    best = metrics.get(BEST_OF_SECTION)
    if isinstance(best, Mapping) and best:
        n = best.get("_best_of")
        lines += [
            "",
            f"## Measured quality, best of {_fmt(n)} takes (held-out audio)",
            "",
            f"The same prompts and seeds, {_fmt(n)} takes generated together per prompt, the one "
            f"that matches its prompt best kept (`--best-of {_fmt(n)}`); its real-time factor "
            "counts every take.",
            "",
        ]
        lines += _quality_lines(best)
    chosen = metrics.get(CANDIDATES_SECTION)
    if isinstance(chosen, Mapping) and chosen:
        n, seconds = chosen.get("_candidates"), chosen.get("_choose_after")
        lines += [
            "",
            f"## Measured quality, {_fmt(n)} candidate beginnings per take (held-out audio)",
            "",
            f"The same prompts and seeds, each take started as {_fmt(n)} candidate beginnings "
            f"generated together, the best kept after {_fmt(seconds)} s (`--candidates "
            f"{_fmt(n)}`); its real-time factor counts every candidate, and a take's first "
            "audio comes once the choice is made.",
            "",
        ]
        lines += _quality_lines(chosen)

    validation = {
        component: values
        for component, values in metrics.items()
        if component not in ("quality", BEST_OF_SECTION, CANDIDATES_SECTION)
        and isinstance(values, Mapping)
        and values
    }
    if validation:
        lines += ["", "## Validation metrics recorded by the trainers", ""]
        for component, values in validation.items():
            shown = ", ".join(
                f"{key} {_fmt(value)}"
                for key, value in values.items()
                if isinstance(value, int | float | str | bool) and len(str(value)) < 60
            )
            lines.append(f"- **{component}**: {shown}")
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(bundle_dir: str | Path) -> Path:
    """Render the card of the bundle at ``bundle_dir`` into its ``README.md``; returns the path."""
    info = read_bundle(bundle_dir)
    card = info.path / CARD_FILE
    tmp = card.with_name(f".{CARD_FILE}.{os.getpid()}.partial")
    try:
        tmp.write_text(render_model_card(info), encoding="utf-8")
        os.replace(tmp, card)
    finally:
        tmp.unlink(missing_ok=True)
    return card
