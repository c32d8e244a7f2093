"""Build AudioLM bundles for tests: random weights (pipeline mechanics) or a tiny trained stack;
and record the codes an engine generates."""

from __future__ import annotations

from pathlib import Path

import torch

from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import write_component
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.audiolm_layout import TokenLayout
from audiogen_studio.models.checkpoint import save_module
from audiogen_studio.models.chroma_encoder import ChromaConfig, ChromaEncoder
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec
from audiogen_studio.models.lm import LMConfig, TokenLM
from audiogen_studio.models.mel_codec import MEL_CODEC_KIND, MelCodec
from audiogen_studio.models.semantic import NAMED_CONFIGS, SemanticEncoder, SemanticTokenizer
from audiogen_studio.training.lm_trainer import stage_sequence_length, stage_vocab


def write_lms(
    folder: Path,
    layout: TokenLayout,
    windows: dict[str, int],
    *,
    sample_rate: int,
    dim: int = 32,
    seed: int = 0,
) -> None:
    """Random tiny LMs of every stage into ``folder`` (registered in bundle.json)."""
    torch.manual_seed(seed)
    for stage, window in windows.items():
        cfg = LMConfig(
            vocab_size=stage_vocab(stage, layout),
            dim=dim,
            depth=1,
            heads=2,
            max_seq_len=stage_sequence_length(stage, window, layout),
        )
        model = TokenLM(cfg)
        file = f"lm_{stage}.safetensors"
        save_module(model, folder / file, cfg)
        write_component(
            folder,
            f"lm_{stage}",
            file=file,
            config={"lm": cfg.to_dict(), "layout": layout.to_dict(), "window": window},
            sample_rate=sample_rate,
        )


def write_tokenizers(
    folder: Path, codec: Codec | MelCodec, tokenizer: SemanticTokenizer, *, name: str
) -> TokenLayout:
    """Save ``codec`` and ``tokenizer`` as the bundle's components; the layout of its LMs
    (2 coarse quantizers, the rest fine)."""
    rate = codec.config.sample_rate
    folder.mkdir(parents=True, exist_ok=True)
    codec.save_pretrained(folder / "codec.safetensors")
    write_component(
        folder,
        "codec",
        file="codec.safetensors",
        config=codec.config.to_dict(),
        sample_rate=rate,
        name=name,
        component_kind=MEL_CODEC_KIND if isinstance(codec, MelCodec) else None,
    )
    tokenizer.save(folder / "semantic.safetensors")
    write_component(
        folder,
        "semantic",
        file="semantic.safetensors",
        config=tokenizer.config.to_dict(),
        sample_rate=rate,
    )
    return TokenLayout(
        semantic_vocab=tokenizer.n_tokens,
        codebook_size=codec.config.codebook_size,
        coarse_quantizers=2,
        fine_quantizers=codec.config.n_q - 2,
        semantic_rate=tokenizer.token_rate,
        acoustic_rate=codec.config.frame_rate,
    )


def random_audiolm_bundle(
    folder: Path,
    *,
    windows: dict[str, int] | None = None,
    codec: Codec | MelCodec | None = None,
    chroma: bool = False,
) -> Path:
    """A complete AudioLM bundle with random weights (tiny codec, tokenizer and LMs); pass
    ``codec`` to use another acoustic codec (e.g. a :class:`MelCodec`), ``chroma`` for a
    music bundle's chroma tokenizer (random centroids) instead of a tiny speech encoder's."""
    torch.manual_seed(0)
    if codec is None:
        codec = Codec(NAMED_CODEC_CONFIGS["tiny"]).eval()
    encoder: SemanticEncoder | ChromaEncoder
    if chroma:
        encoder = ChromaEncoder(ChromaConfig(sample_rate=codec.config.sample_rate))
        layer = 0
    else:
        encoder = SemanticEncoder(NAMED_CONFIGS["tiny"])
        layer = NAMED_CONFIGS["tiny"].feature_layer
    centroids = torch.randn(16, encoder.feature_dim(layer))
    tokenizer = SemanticTokenizer(encoder, layer=layer, centroids=centroids)
    layout = write_tokenizers(folder, codec, tokenizer, name="random-audiolm")
    write_lms(
        folder,
        layout,
        windows or {"semantic": 40, "coarse": 12, "fine": 8},
        sample_rate=codec.config.sample_rate,
    )
    return folder


def pushed_codes(engine: AudioLMEngine, request: GenerationRequest) -> torch.Tensor:
    """The codes ``[B, q, F]`` the engine's streaming decoder got after its priming push."""
    pushes: list[torch.Tensor] = []
    make = engine.codec.stream_decoder

    def recording(batch: int) -> object:
        decoder = make(batch)
        push = decoder.push

        def record(codes: torch.Tensor) -> torch.Tensor:
            pushes.append(codes.clone())
            return push(codes)

        decoder.push = record  # type: ignore[method-assign]
        return decoder

    engine.codec.stream_decoder = recording  # type: ignore[method-assign,assignment]
    try:
        collect(engine, request)
    finally:
        del engine.codec.stream_decoder
    return torch.cat(pushes[1:], dim=2)
