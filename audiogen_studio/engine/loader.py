"""Load an engine for a model bundle: the bundle's ``kind`` decides which engine serves it."""

from __future__ import annotations

from audiogen_studio.engine.api import Engine, GenerationError
from audiogen_studio.engine.bundles import BundleError, find_bundle

#: bundle kinds that serve each mode
KINDS_FOR_MODE = {"continue": ("audiolm", "wavenet"), "vocode": ("wavenet-vocoder",)}


def load_engine(model: str, *, mode: str = "continue", device: str = "auto") -> Engine:
    """The engine for bundle ``model`` (a name in the search path or a folder).

    Raises:
        GenerationError: no such bundle, or a bundle of a kind that cannot serve ``mode``.
    """
    try:
        bundle = find_bundle(model)
        bundle.require_kind(*KINDS_FOR_MODE[mode])
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
