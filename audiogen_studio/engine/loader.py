"""Load an engine for a model bundle: the bundle's ``kind`` decides which engine serves it."""

from __future__ import annotations

from audiogen_studio.engine.api import Engine, GenerationError
from audiogen_studio.engine.bundles import BundleError, find_bundle

#: bundle kinds that serve each mode
KINDS_FOR_MODE = {"continue": ("audiolm", "wavenet"), "vocode": ("wavenet-vocoder",)}


#: bundle kinds each engine name serves
KINDS_FOR_ENGINE = {"audiolm": ("audiolm",), "wavenet": ("wavenet", "wavenet-vocoder")}


def load_engine(
    model: str, *, mode: str = "continue", device: str = "auto", engine: str = "auto"
) -> Engine:
    """The engine for bundle ``model`` (a name in the search path or a folder).

    Args:
        engine: ``"auto"`` (the bundle's kind decides), ``"audiolm"`` or ``"wavenet"`` (the
            bundle must be of that engine's kind).

    Raises:
        GenerationError: no such bundle, or a bundle of a kind that cannot serve ``mode`` or
            ``engine``.
    """
    if engine != "auto" and engine not in KINDS_FOR_ENGINE:
        raise GenerationError(f"unknown engine {engine!r}: use auto, audiolm or wavenet")
    try:
        bundle = find_bundle(model)
        kinds = KINDS_FOR_MODE[mode]
        if engine != "auto":
            kinds = tuple(k for k in kinds if k in KINDS_FOR_ENGINE[engine])
            if not kinds:
                raise GenerationError(f"the {engine} engine cannot {mode} audio")
        bundle.require_kind(*kinds)
    except BundleError as exc:
        raise GenerationError(str(exc)) from exc
    try:
        if bundle.kind == "audiolm":
            from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine

            return AudioLMEngine.from_bundle(bundle, device=device)
        from audiogen_studio.engine.wavenet_pipeline import WaveNetEngine

        return WaveNetEngine.from_bundle(bundle, device=device)
    except BundleError as exc:
        raise GenerationError(str(exc)) from exc
