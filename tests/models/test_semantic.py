"""Semantic encoder and tokenizer (models/semantic.py) and the torchaudio SSL adapter
(models/ssl_adapter.py): shapes, frame alignment, masking, save/load, windowed tokens, bad input;
the adapter with randomly initialised weights in torchaudio and Hugging Face key layouts,
architecture inference, and refusal of pickle files."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.torch import save_file

from audiogen_studio.models.checkpoint import CheckpointError, load_state, save_module
from audiogen_studio.models.semantic import (
    NAMED_CONFIGS,
    MaskedPredictionHead,
    SemanticConfig,
    SemanticEncoder,
    SemanticInputError,
    SemanticTokenizer,
    masked_prediction_loss,
    named_config,
    span_mask,
    token_purity,
    token_usage,
)
from audiogen_studio.models.ssl_adapter import (
    SSLConfig,
    SSLWeightsError,
    TorchaudioSSLEncoder,
    fit_ssl_tokenizer,
    infer_ssl_config,
    load_ssl_encoder,
    save_ssl_weights,
    to_torchaudio_state,
)

TINY = NAMED_CONFIGS["tiny"]
RATE = 16_000


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _audio(seconds: float, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * torch.sin(2 * torch.pi * 330 * t)
    return tone + 0.05 * torch.randn(batch, t.shape[0], generator=g)


def _encoder(config: SemanticConfig = TINY, seed: int = 0) -> SemanticEncoder:
    torch.manual_seed(seed)
    return SemanticEncoder(config).eval()


# --- config ---------------------------------------------------------------------------------------


def test_configs_round_trip_and_reject_nonsense(tmp_path: Path) -> None:
    for config in NAMED_CONFIGS.values():
        assert SemanticConfig.from_dict(config.to_dict()) == config
    assert NAMED_CONFIGS["default"].token_rate == 50.0
    assert 500 <= NAMED_CONFIGS["default"].n_clusters <= 1024
    path = tmp_path / "c.json"
    path.write_text('{"dim": 32, "heads": 2, "depth": 1, "target_layer": 1, "feature_layer": 1}')
    assert named_config(str(path)).dim == 32
    with pytest.raises(ValueError, match="unknown semantic config keys: colour"):
        SemanticConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="multiple of heads"):
        SemanticConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="feature_layer"):
        SemanticConfig(depth=2, target_layer=1, feature_layer=3)
    with pytest.raises(ValueError, match="hop = 5"):
        SemanticConfig(frontend="conv", hop=300)
    with pytest.raises(ValueError, match="unknown semantic config"):
        named_config("huge")


# --- encoder --------------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", ["mel", "conv"])
@pytest.mark.parametrize("hop", [320, 640])
def test_features_have_ceil_t_over_hop_frames(frontend: str, hop: int) -> None:
    config = dataclasses.replace(TINY, frontend=frontend, hop=hop, conv_channels=16)
    encoder = _encoder(config)
    for length in (1, hop - 1, hop, hop + 1, 7 * hop + 3):
        for layer in (0, 1, 2):
            feats = encoder.features(_audio(length / RATE, batch=2), layer)
            assert feats.shape == (2, -(-length // hop), TINY.dim)
    assert config.token_rate == RATE / hop


@pytest.mark.parametrize("frontend", ["mel", "conv"])
def test_frame_j_is_centred_on_the_middle_of_its_block(frontend: str) -> None:
    """A click at sample j·hop + hop/2 moves frame j's front-end output most."""
    encoder = _encoder(dataclasses.replace(TINY, frontend=frontend, conv_channels=16))
    hop = TINY.hop
    silence = torch.zeros(1, 10 * hop)
    base = encoder.frontend(silence)
    for j in (0, 4, 9):
        click = silence.clone()
        click[0, j * hop + hop // 2] = 1.0
        change = (encoder.frontend(click) - base).abs().sum(-1)[0]  # [F]
        assert int(change.argmax()) == j


def test_encoder_is_bidirectional_and_deterministic_in_eval() -> None:
    encoder = _encoder()
    audio = _audio(1.0)
    first = encoder.features(audio, 2)
    assert torch.equal(first, encoder.features(audio, 2))
    later = audio.clone()
    later[0, -3000:] = 0.0  # change the end: the first frame hears it through attention
    assert not torch.allclose(encoder.features(later, 2)[0, 0], first[0, 0])
    states = encoder.hidden_states(audio)
    assert len(states) == TINY.depth + 1
    assert torch.equal(states[-1], encoder(audio))


def test_masked_frames_carry_only_the_mask_embedding() -> None:
    encoder = _encoder()
    a, b = _audio(1.0, seed=1), _audio(1.0, seed=2) * 3
    frames = encoder.frames(a.shape[1])
    everything = torch.ones(1, frames, dtype=torch.bool)
    # all frames masked: the audio no longer matters
    assert torch.allclose(encoder(a, everything), encoder(b, everything), atol=1e-6)
    # a partial mask replaces exactly the masked frames by the embedding, before positions
    some = torch.zeros(1, frames, dtype=torch.bool)
    some[0, 10:20] = True
    assert not torch.allclose(encoder(a, some), encoder(a))
    seen: list[torch.Tensor] = []
    hook = encoder.pos_conv.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    try:
        encoder(a, some)
    finally:
        hook.remove()
    rows = seen[0].transpose(1, 2)[0]  # [F, D]: the transformer input before positions
    assert bool((rows[10:20] == encoder.mask_embedding).all())
    assert not bool((rows[:10] == encoder.mask_embedding).all(-1).any())
    with pytest.raises(ValueError, match="mask must be"):
        encoder(a, some[:, :5])


def test_span_mask_statistics_spans_and_reproducibility() -> None:
    g = torch.Generator().manual_seed(0)
    mask = span_mask(2000, 100, prob=0.08, length=10, generator=g)
    assert mask.shape == (2000, 100) and mask.dtype == torch.bool
    expected = 1 - (1 - 0.08) ** 10  # ≈ 0.57 away from the edges
    assert abs(float(mask[:, 10:90].float().mean()) - expected) < 0.02
    assert bool(mask.any(1).all())  # every row has a span
    for row in mask[:50]:  # every run of masked frames is at least one span long
        runs = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])]))
        starts, ends = (runs == 1).nonzero(), (runs == -1).nonzero()
        assert bool(((ends - starts) >= 10).all())
    again = span_mask(2000, 100, prob=0.08, length=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    short = span_mask(3, 4, prob=0.01, length=10, generator=g)  # span longer than the input
    assert bool(short.all())


def test_masked_prediction_loss_counts_masked_frames_only() -> None:
    torch.manual_seed(0)
    head = MaskedPredictionHead(TINY.dim, 7, head_dim=16, temperature=0.1)
    hidden = torch.randn(2, 12, TINY.dim)
    with torch.no_grad():
        logits = head(hidden)
    assert logits.shape == (2, 12, 7) and float(logits.abs().max()) <= 10.0 + 1e-4
    targets = torch.randint(7, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 3:8] = True
    r = masked_prediction_loss(logits, targets, mask)
    assert r.masked_frames == 10
    changed = logits.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 7) * 5  # unmasked logits do not count
    assert torch.allclose(masked_prediction_loss(changed, targets, mask).loss, r.loss)
    perfect = torch.nn.functional.one_hot(targets, 7).float() * 20
    assert masked_prediction_loss(perfect, targets, mask).accuracy == 1.0
    with pytest.raises(ValueError, match="no masked frames"):
        masked_prediction_loss(logits, targets, torch.zeros_like(mask))


# --- tokenizer ------------------------------------------------------------------------------------


def _tokenizer(n_clusters: int = 8, seed: int = 0) -> SemanticTokenizer:
    pieces = [_audio(1.0, seed=s) for s in range(3)]
    return SemanticTokenizer.fit(_encoder(seed=seed), pieces, layer=2, n_clusters=n_clusters)


def test_tokenizer_attributes_token_count_and_determinism() -> None:
    tok = _tokenizer()
    assert (tok.token_rate, tok.hop, tok.n_tokens, tok.sample_rate) == (50.0, 320, 8, RATE)
    for length in (1, 319, 320, 321, 16_000):
        ids = tok.tokens(_audio(length / RATE, batch=2))
        assert ids.shape == (2, -(-length // 320)) and ids.dtype == torch.long
        assert int(ids.min()) >= 0 and int(ids.max()) < 8
    audio = _audio(2.0, seed=5)
    tok.train()  # tokens are computed in eval mode whatever the module's mode
    assert torch.equal(tok.tokens(audio), tok.tokens(audio))
    assert tok.training  # and the mode is given back
    assert tok.tokens(audio[0].numpy()).shape == (1, 100)  # numpy [T] works too


def test_tokenizer_save_load_round_trip_gives_identical_tokens(tmp_path: Path) -> None:
    tok = _tokenizer()
    path = tok.save(tmp_path / "semantic.safetensors", extra={"step": 3})
    loaded = SemanticTokenizer.from_pretrained(path)
    audio = _audio(3.0, seed=9, batch=2)
    assert torch.equal(loaded.tokens(audio), tok.tokens(audio))
    assert loaded.config == tok.config
    assert torch.equal(loaded.centroids, tok.centroids)
    # a file of another module, or of another size, is a clear error
    other = tmp_path / "other.safetensors"
    save_module(torch.nn.Linear(2, 2), other, {"a": 1})
    with pytest.raises(CheckpointError, match="not a semantic tokenizer"):
        SemanticTokenizer.from_pretrained(other)
    bigger = _tokenizer(n_clusters=9)
    state = {k: v.contiguous() for k, v in bigger.state_dict().items()}
    _, meta = load_state(path)
    save_file(
        state,
        str(tmp_path / "bad.safetensors"),
        metadata={
            "format": meta["format"],
            "module": "SemanticTokenizer",
            "config": json.dumps(tok.config.to_dict()),
        },
    )
    with pytest.raises(CheckpointError, match="shape mismatch: centroids"):
        SemanticTokenizer.from_pretrained(tmp_path / "bad.safetensors")


def test_windowed_tokens_equal_full_when_the_window_covers_the_audio() -> None:
    tok = _tokenizer()
    audio = _audio(4.0, seed=3)
    full = tok.tokens(audio, window_seconds=None)
    assert torch.equal(tok.tokens(audio, window_seconds=4.0), full)
    windowed = tok.tokens(audio, window_seconds=1.0)
    assert windowed.shape == full.shape
    assert float((windowed == full).float().mean()) > 0.8


def test_tokens_resample_other_rates() -> None:
    tok = _tokenizer()
    audio8k = torchaudio.functional.resample(_audio(1.0, seed=4), RATE, 8000)
    assert tok.tokens(audio8k, rate=8000).shape == (1, 50)


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (torch.zeros(1, 0), "empty"),
        (torch.zeros(0), "empty"),
        (torch.tensor([0.1, float("nan"), 0.2]), "NaN"),
        (torch.tensor([0.1, float("inf")]), "NaN or infinite"),
        (torch.zeros(1, 1, 100), r"\[T\] or \[B, T\]"),
    ],
)
def test_bad_audio_is_a_clear_error(audio: torch.Tensor, match: str) -> None:
    tok = _tokenizer()
    with pytest.raises(SemanticInputError, match=match):
        tok.tokens(audio)


def test_purity_and_usage_measures() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, -1])
    perfect = torch.tensor([5, 5, 3, 3, 7, 7, 0])
    assert token_purity(perfect, labels)["purity"] == 1.0
    mixed = torch.tensor([5, 5, 5, 3, 7, 7, 0])
    p = token_purity(mixed, labels)
    assert p["purity"] == pytest.approx(5 / 6) and p["per_label"][1] == 0.5
    held = token_purity(perfect, labels, torch.tensor([5, 9]), torch.tensor([0, 1]))
    assert held["purity"] == 0.5 and held["unmapped"] == 0.5  # token 9 was never seen
    usage = token_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert usage["used_fraction"] == 0.5 and usage["perplexity"] == pytest.approx(2.0)


# --- torchaudio SSL adapter -----------------------------------------------------------------------

SMALL_CONV = [[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 2, 2], [16, 2, 2]]


def _small_ssl(**overrides: object) -> SSLConfig:
    model = {
        "extractor_mode": "group_norm",
        "extractor_conv_layer_config": SMALL_CONV,
        "extractor_conv_bias": False,
        "encoder_embed_dim": 32,
        "encoder_pos_conv_kernel": 16,
        "encoder_pos_conv_groups": 4,
        "encoder_num_layers": 3,
        "encoder_num_heads": 4,
        "encoder_ff_interm_features": 64,
        "encoder_layer_norm_first": False,
    }
    model.update(overrides)
    return SSLConfig(model=model, arch="custom")


def _random_wav2vec2(config: SSLConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(config.model)
    kwargs["extractor_conv_layer_config"] = [
        tuple(c) for c in kwargs["extractor_conv_layer_config"]
    ]
    return torchaudio.models.wav2vec2_model(**kwargs, aux_num_out=None).eval()


def _hf_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchaudio keys → Hugging Face HubertForCTC keys (old weight-norm names, extra heads)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        if key.startswith("encoder.feature_projection."):
            key = key.removeprefix("encoder.")
        elif key.startswith("encoder.transformer."):
            key = "encoder." + key.removeprefix("encoder.transformer.")
        out["hubert." + key] = value.contiguous()
    out["hubert.masked_spec_embed"] = torch.zeros(32)
    out["lm_head.weight"] = torch.zeros(5, 32)
    return out


def test_adapter_loads_torchaudio_weights_and_matches_torchaudio(tmp_path: Path) -> None:
    config = _small_ssl()
    model = _random_wav2vec2(config)
    path = save_ssl_weights(model, tmp_path / "ssl.safetensors", config)
    encoder = load_ssl_encoder(path)
    assert isinstance(encoder, TorchaudioSSLEncoder)
    assert (encoder.hop, encoder.num_layers, encoder.receptive_field) == (320, 3, 400)
    audio = _audio(1.0, batch=2)
    for layer in (1, 3):
        feats = encoder.features(audio, layer)
        assert feats.shape == (2, 50, 32)
        padded = torch.nn.functional.pad(audio, (40, 40))  # 16000 + 80 = 49 * 320 + 400
        with torch.no_grad():
            expected, _ = model.extract_features(padded, num_layers=layer)
        assert torch.allclose(feats, expected[-1], atol=1e-5)
    assert encoder.features(_audio(321 / RATE), 1).shape == (1, 2, 32)
    with pytest.raises(ValueError, match="layer must be within 1..3"):
        encoder.features(audio, 0)


def test_adapter_reads_hugging_face_layout_and_infers_known_architectures(tmp_path: Path) -> None:
    config = _small_ssl()
    model = _random_wav2vec2(config, seed=1)
    state = model.state_dict()
    hf = tmp_path / "model.safetensors"
    save_file(_hf_layout(state), str(hf), metadata={"format": "pt"})
    # a 32-wide model: the heads cannot be inferred, a config must be given
    with pytest.raises(SSLWeightsError, match="attention heads"):
        load_ssl_encoder(hf)
    encoder = load_ssl_encoder(hf, arch=config)
    audio = _audio(0.5)
    reference = TorchaudioSSLEncoder(config)
    reference.model.load_state_dict(state)
    assert torch.equal(encoder.features(audio, 2), reference.features(audio, 2))
    assert to_torchaudio_state(_hf_layout(state)).keys() == state.keys()
    # the real HuBERT BASE layout is recognised from its shapes alone (random weights)
    base = infer_ssl_config(torchaudio.models.hubert_base().state_dict())
    assert base.arch == "hubert_base" and base.model["encoder_num_heads"] == 12
    assert base.normalize_waveform is False


def test_adapter_refuses_pickles_and_misfits(tmp_path: Path) -> None:
    config = _small_ssl()
    model = _random_wav2vec2(config)
    pth = tmp_path / "hubert.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(SSLWeightsError, match="PyTorch pickle file.*convert it once.*save_file"):
        load_ssl_encoder(pth)
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(pth.read_bytes())
    with pytest.raises(SSLWeightsError, match="PyTorch pickle file"):
        load_ssl_encoder(disguised)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(SSLWeightsError, match="not a safetensors file"):
        load_ssl_encoder(text)
    with pytest.raises(SSLWeightsError, match="file not found"):
        load_ssl_encoder(tmp_path / "missing.safetensors")
    partial = {k: v.contiguous() for k, v in model.state_dict().items() if "layers.2." not in k}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(SSLWeightsError, match="missing tensors encoder.transformer.layers.2"):
        load_ssl_encoder(tmp_path / "partial.safetensors", arch=config)
    wider = _small_ssl(encoder_ff_interm_features=128)
    with pytest.raises(SSLWeightsError, match="shape mismatch"):
        load_ssl_encoder(save_ssl_weights(model, tmp_path / "w.safetensors", config), arch=wider)
    with pytest.raises(SSLWeightsError, match="unknown SSL architecture"):
        load_ssl_encoder(tmp_path / "w.safetensors", arch="hubert_huge")


def test_adapter_tokenizer_is_a_semantic_tokenizer_that_round_trips(tmp_path: Path) -> None:
    config = _small_ssl()
    path = save_ssl_weights(_random_wav2vec2(config), tmp_path / "ssl.safetensors", config)
    encoder = load_ssl_encoder(path, normalize_waveform=True)
    pieces = [_audio(1.0, seed=s).numpy()[0] for s in range(3)]
    tok = fit_ssl_tokenizer(encoder, pieces, layer=2, n_clusters=6)
    assert isinstance(tok, SemanticTokenizer) and tok.n_tokens == 6 and tok.token_rate == 50.0
    saved = tok.save(tmp_path / "semantic.safetensors")
    loaded = SemanticTokenizer.from_pretrained(saved)
    assert loaded.config.encoder == "torchaudio-ssl"
    audio = _audio(1.3, seed=7)
    assert loaded.tokens(audio).shape == (1, 65)
    assert torch.equal(loaded.tokens(audio), tok.tokens(audio))
    # normalize_waveform: the scale of the input no longer matters
    assert torch.equal(tok.tokens(audio), tok.tokens(audio * 4))


def test_numpy_audio_is_accepted() -> None:
    tok = _tokenizer()
    samples = np.zeros(640, dtype=np.float64)
    assert tok.tokens(samples).shape == (1, 2)
