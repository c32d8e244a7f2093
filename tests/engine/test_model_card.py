"""Model cards rendered from bundle.json, bundle metadata updates and packing for shipping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiogen_studio.cli.main import main
from audiogen_studio.engine import bundles, model_card


def _trained_bundle(root: Path) -> Path:
    folder = root / "trained"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "codec.safetensors").write_bytes(b"c" * 5000)
    (folder / "codec.safetensors").write_bytes(b"w" * 2000)
    (folder / "lm_fine.safetensors").write_bytes(b"f" * 1000)
    data = {
        "format": 1,
        "name": "speech",
        "version": "0.2.0",
        "kind": "audiolm",
        "sample_rate": 16000,
        "description": "A speech bundle.",
        "components": {
            "codec": {"file": "codec.safetensors", "config": {}},
            "lm_fine": {"file": "lm_fine.safetensors", "config": {}},
        },
        "training": {
            "codec": {"data": "/corpora/speech", "steps": 4200, "hours": 0.43, "device": "cpu"},
            "lm_fine": {
                "data": "/corpora/speech",
                "steps": 900,
                "train_hours": 0.43,
                "init_from": "models/speech",
            },
        },
        "metrics": {"codec": {"val_mel_l1": 0.31, "parameters": 123456}},
    }
    (folder / "bundle.json").write_text(json.dumps(data))
    return folder


def test_card_shows_provenance_metrics_and_quality(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    quality = {
        "codec_pesq_wb": {"value": 1.93, "target": "> Opus 6 kbps (1.71)", "met": True},
        "speaker_cosine": {"value": 0.62, "target": ">= 0.80", "met": False, "note": "n=8"},
        "_measured_with": "audiogen-studio eval bundle --model speech",
    }
    info = model_card.update_bundle(folder, version="0.3.0", metrics={"quality": quality})
    assert info.version == "0.3.0"
    assert info.metrics["codec"]["val_mel_l1"] == 0.31  # other sections untouched
    card = model_card.write_model_card(folder).read_text()
    assert card.startswith("# speech 0.3.0")
    assert "A speech bundle." in card
    assert "| codec | `codec.safetensors` | 0.0 MB | 123,456 |" in card
    assert "| codec | 4,200 | 0.43 | cpu |" in card
    assert "| lm_fine | 900 | 0.43 | — |" in card  # train_hours fills the same column
    assert "`/corpora/speech`: codec, lm_fine" in card
    assert "Fine-tuned from (weights that started the run):\n- `models/speech`: lm_fine" in card
    assert "| codec_pesq_wb | 1.93 | > Opus 6 kbps (1.71) | met |" in card
    assert "| speaker_cosine | 0.62 | >= 0.80 | not met | n=8 |" in card
    assert "Measured with `audiogen-studio eval bundle --model speech`." in card


def test_pack_copies_only_runtime_files_and_replaces_stale_weights(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    dest = tmp_path / "models" / "speech"
    dest.mkdir(parents=True)
    (dest / "old_component.safetensors").write_bytes(b"stale")
    model_card.pack_bundle(folder, dest)
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md",
        "bundle.json",
        "codec.safetensors",
        "lm_fine.safetensors",
    ]
    packed = bundles.read_bundle(dest)
    assert model_card.shipped_bytes(packed) == 3000 + (dest / "bundle.json").stat().st_size
    with pytest.raises(bundles.BundleError, match="other than the bundle itself"):
        model_card.pack_bundle(folder, folder)


def _checkpoint_bytes(
    tensors: dict[str, object], metadata: dict[str, str], order: list[str]
) -> bytes:
    """A safetensors file whose header lists its metadata keys in ``order`` (as files written
    before the header was made canonical do)."""
    import struct

    from safetensors.torch import save

    data = save(tensors, metadata=metadata)  # type: ignore[arg-type]
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = {key: metadata[key] for key in order}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


def test_repacking_keeps_unchanged_weights_files_as_they_are(tmp_path: Path) -> None:
    import torch

    folder = _trained_bundle(tmp_path)
    meta = {"format": "audiogen-studio/checkpoint-1", "module": "TokenLM", "extra": "{}"}
    weights = {"w": torch.arange(6, dtype=torch.float32)}
    (folder / "codec.safetensors").write_bytes(
        _checkpoint_bytes(weights, meta, ["module", "format", "extra"])
    )
    (folder / "lm_fine.safetensors").write_bytes(_checkpoint_bytes(weights, meta, list(meta)))
    dest = tmp_path / "packed"
    model_card.pack_bundle(folder, dest, half=True)
    # a shipped file from before the header was canonical: same tensors, other metadata order
    legacy = _checkpoint_bytes({"w": weights["w"].half()}, meta, ["extra", "module", "format"])
    (dest / "lm_fine.safetensors").write_bytes(legacy)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.glob("*.safetensors")}
    # only the codec changes
    new_codec = {"w": torch.arange(6, dtype=torch.float32) * 2}
    (folder / "codec.safetensors").write_bytes(_checkpoint_bytes(new_codec, meta, list(meta)))
    model_card.pack_bundle(folder, dest, half=True)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.glob("*.safetensors")}
    assert after["lm_fine.safetensors"] == before["lm_fine.safetensors"]
    assert (dest / "lm_fine.safetensors").read_bytes() == legacy
    assert after["codec.safetensors"] != before["codec.safetensors"]
    from audiogen_studio.models.checkpoint import load_state

    codec, _ = load_state(dest / "codec.safetensors")
    assert torch.equal(codec["w"], new_codec["w"].half())
    assert not list(dest.glob(".*partial"))


def test_pack_refuses_a_bundle_with_missing_weights(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    (folder / "lm_fine.safetensors").unlink()
    with pytest.raises(bundles.BundleError, match="missing weights file lm_fine"):
        model_card.pack_bundle(folder, tmp_path / "out")


def test_models_card_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--description", "New words."]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "README.md")
    assert "New words." in (folder / "README.md").read_text()
    assert main(["models", "card", str(folder), "--version", " "]) == 2
    assert "version cannot be empty" in capsys.readouterr().err
    assert main(["models", "pack", str(folder), str(tmp_path / "packed")]) == 0
    assert (tmp_path / "packed" / "README.md").is_file()


def test_quality_report_becomes_the_cards_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _trained_bundle(tmp_path)
    report = {
        "benchmark": "quality",
        "machine": {"cpus": 2},
        "settings": {"clips": 4},
        "codec": {
            "codec_kbps": 4.0,
            "pesq_wb": {"value": 1.9, "target": "> 1.85", "met": True, "note": "vs Opus"},
            "opus_same": {"kbps": 6.0, "pesq_wb": 1.85},
        },
        "codec_clips": [{"id": "a", "pesq_wb": 1.8}],
        "speech_continuation": {
            "model": {
                "speaker_cosine": {"value": 0.7, "target": ">= 0.8", "met": False},
                "dnsmos_ovrl": {"value": 2.3, "stderr": 0.05, "takes_meeting": 0.0},
                "tempo_ratio": {
                    "value": 0.99,
                    "target": "0.95..1.05",
                    "met": True,
                    "takes_meeting": 0.1379,
                },
            }
        },
    }
    figures = model_card.quality_figures(report)
    assert figures["codec.pesq_wb"] == {
        "value": 1.9,
        "target": "> 1.85",
        "met": True,
        "note": "vs Opus",
    }
    assert figures["codec.opus_same.pesq_wb"] == {"value": 1.85}
    assert figures["codec.codec_kbps"] == {"value": 4.0}
    assert figures["speech_continuation.model.speaker_cosine"]["met"] is False
    assert figures["speech_continuation.model.dnsmos_ovrl"] == {
        "value": 2.3,
        "stderr": 0.05,
        "takes_meeting": 0.0,
    }
    assert figures["_machine"] == {"cpus": 2}
    assert not any(k.startswith(("settings", "codec_clips")) for k in figures)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    args = ["models", "card", str(folder), "--quality", str(path), "--measured-with", "q.py"]
    assert main(args) == 0
    card = (folder / "README.md").read_text()
    assert "| speech_continuation.model.speaker_cosine | 0.7 | >= 0.8 | not met |" in card
    assert "| speech_continuation.model.dnsmos_ovrl | 2.3 ± 0.05 |  | — |" in card
    # a mean can meet a target that few takes meet: the card says how many did
    assert "| 0.99 | 0.95..1.05 | met (14% of the takes do) |" in card
    assert "Measured with `q.py`." in card
    path.write_text("[1, 2]")
    assert main(["models", "card", str(folder), "--quality", str(path)]) == 2
    assert "not a quality report" in capsys.readouterr().err


def test_half_pack_halves_the_weights_and_still_generates(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from audiolm_stack import random_audiolm_bundle

    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.engine.api import GenerationRequest
    from audiogen_studio.engine.loader import load_engine
    from audiogen_studio.engine.takes import collect
    from audiogen_studio.models.checkpoint import load_state

    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "full")
    packed = model_card.pack_bundle(bundle, tmp_path / "half", half=True)
    full_info, half_info = bundles.read_bundle(bundle), bundles.read_bundle(packed)
    ratio = model_card.shipped_bytes(half_info) / model_card.shipped_bytes(full_info)
    assert 0.45 < ratio < 0.6
    for component in full_info.components:
        full, _ = load_state(full_info.component_path(component))
        half, meta = load_state(half_info.component_path(component))
        assert meta["module"]
        for name, tensor in full.items():
            if tensor.dtype == torch.float32:
                assert half[name].dtype == torch.float16
                torch.testing.assert_close(half[name].float(), tensor.half().float())
            else:
                assert torch.equal(half[name], tensor)  # integer buffers untouched
    rate = full_info.sample_rate
    t = np.arange(rate) / rate
    prompt = Clip((0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), rate)
    request = GenerationRequest(prompt=prompt, seconds=0.3, seed=3, temperature=0.8)
    (take,) = collect(load_engine(str(packed), device="cpu"), request, None)
    assert take.complete and take.generated.frames > 0
    assert np.isfinite(take.generated.samples).all()


def test_card_files_a_single_component_bundles_flat_tables_under_it(tmp_path: Path) -> None:
    # WaveNet bundles keep training and metrics flat, and `models card --quality` nests
    # the figures beside them
    bundles.write_component(
        tmp_path / "wn",
        "wavenet",
        file="wavenet.safetensors",
        config={"layers": 2},
        sample_rate=16_000,
        kind="wavenet",
        name="wn",
    )
    (tmp_path / "wn" / "wavenet.safetensors").write_bytes(b"")  # the card only sizes it
    manifest = tmp_path / "wn" / "bundle.json"
    data = json.loads(manifest.read_text())
    data["training"] = {"steps": 2511, "time_seconds": 600.0, "data": "/corpus/music"}
    data["metrics"] = {"val_loss": 3.23, "parameters": 399_664, "quality": {"rtf": 0.4}}
    manifest.write_text(json.dumps(data))
    card = model_card.render_model_card(bundles.read_bundle(tmp_path / "wn"))
    assert "| wavenet | 2,511 |" in card
    assert "| wavenet | `wavenet.safetensors` | 0.0 MB | 399,664 |" in card
    assert "- `/corpus/music`: wavenet" in card
    assert "- **wavenet**: val_loss 3.23, parameters 399,664" in card
    assert "| rtf | 0.4 |" in card


def test_stage_temperatures_are_recorded_shown_and_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--stage-temperatures", "fine=0,coarse=0.75"]) == 0
    info = bundles.read_bundle(folder)
    assert info.generation == {"stage_temperatures": {"fine": 0.0, "coarse": 0.75}}
    card = (folder / "README.md").read_text()
    assert "## Sampling defaults" in card and "fine × 0, coarse × 0.75" in card
    # packing keeps them; an empty mapping removes them
    packed = bundles.read_bundle(model_card.pack_bundle(folder, tmp_path / "packed"))
    assert packed.generation == info.generation
    info = model_card.update_bundle(folder, stage_temperatures={})
    assert info.generation == {}
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    # bad factors are usage errors that name the problem; the manifest is untouched
    before = (folder / "bundle.json").read_text()
    with pytest.raises(SystemExit) as usage:
        main(["models", "card", str(folder), "--stage-temperatures", "fine=-1"])
    assert usage.value.code == 2
    assert "stage temperature of fine must be >= 0" in capsys.readouterr().err
    with pytest.raises(bundles.BundleError, match="unknown stage 'loud'"):
        model_card.update_bundle(folder, stage_temperatures={"loud": 1.0})
    assert (folder / "bundle.json").read_text() == before


def test_stage_temperatures_need_an_audiolm_bundle(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    data = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**data, "kind": "wavenet"}))
    with pytest.raises(bundles.BundleError, match="no token stages"):
        model_card.update_bundle(folder, stage_temperatures={"fine": 0.5})


def test_decode_quantizers_are_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    with pytest.raises(bundles.BundleError, match="no token layout"):
        model_card.update_bundle(folder, decode_quantizers=4)
    data = json.loads((folder / "bundle.json").read_text())
    layout = {"coarse_quantizers": 3, "fine_quantizers": 5, "semantic_vocab": 500}
    data["components"]["lm_fine"]["config"] = {"layout": layout}
    (folder / "bundle.json").write_text(json.dumps(data))
    assert main(["models", "card", str(folder), "--decode-quantizers", "4"]) == 0
    info = bundles.read_bundle(folder)
    assert info.generation == {"decode_quantizers": 4}
    assert "decoded from the codec's first 4 quantizers" in (folder / "README.md").read_text()
    before = (folder / "bundle.json").read_text()
    for bad in (9, -1):
        with pytest.raises(bundles.BundleError, match=r"within 1\.\.8"):
            model_card.update_bundle(folder, decode_quantizers=bad)
    assert (folder / "bundle.json").read_text() == before
    info = model_card.update_bundle(folder, stage_temperatures={"fine": 0.0})
    assert info.generation == {"decode_quantizers": 4, "stage_temperatures": {"fine": 0.0}}
    info = model_card.update_bundle(folder, decode_quantizers=0, stage_temperatures={})
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    data["kind"] = "wavenet"
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(bundles.BundleError, match="no codec tokens"):
        model_card.update_bundle(folder, decode_quantizers=3)


def test_adaptation_defaults_are_recorded_checked_shown_and_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _trained_bundle(tmp_path)
    settings = "steps=12,lr=8e-4,mix=0.5,blocks=2"
    assert main(["models", "card", str(folder), "--adaptation", settings]) == 0
    info = bundles.read_bundle(folder)
    assert info.generation["adaptation"] == {
        "steps": 12, "lr": 8e-4, "stages": ["coarse"], "windows": 1, "seconds": None, "mix": 0.5,
        "blocks": 2,
    }  # fmt: skip
    card = (folder / "README.md").read_text()
    assert "## Prompt adaptation" in card and "coarse LM takes 12 Adam steps" in card
    assert "training its top 2 blocks only, and then keeps 0.5 of the change to its" in card
    args = ["models", "card", str(folder), "--adaptation", "steps=4,stages=coarse+semantic"]
    assert main(args) == 0
    assert bundles.read_bundle(folder).generation["adaptation"]["stages"] == ["coarse", "semantic"]
    before = (folder / "bundle.json").read_text()
    for bad in ("steps=-2", "lr=fast", "stages=voice", "depth=3", "steps", "blocks=0"):
        with pytest.raises(SystemExit):
            main(["models", "card", str(folder), "--adaptation", bad])
        assert "--adaptation" in capsys.readouterr().err
    with pytest.raises(bundles.BundleError, match="lr"):
        model_card.update_bundle(folder, adaptation={"steps": 3, "lr": -1})
    assert (folder / "bundle.json").read_text() == before
    assert main(["models", "card", str(folder), "--adaptation", "off"]) == 0
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    assert "Prompt adaptation" not in (folder / "README.md").read_text()
    data = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**data, "kind": "wavenet"}))
    with pytest.raises(bundles.BundleError, match="no LMs to adapt"):
        model_card.update_bundle(folder, adaptation={"steps": 3})


def test_coarse_guidance_is_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--coarse-guidance", "2.5"]) == 0
    assert bundles.read_bundle(folder).generation == {"coarse_guidance": 2.5}
    assert "classifier-free guidance at scale 2.5" in (folder / "README.md").read_text()
    before = (folder / "bundle.json").read_text()
    for bad in (-1.0, float("nan")):
        with pytest.raises(bundles.BundleError, match=">= 0"):
            model_card.update_bundle(folder, coarse_guidance=bad)
    assert (folder / "bundle.json").read_text() == before
    model_card.update_bundle(folder, coarse_guidance=1.0)
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    assert "guidance" not in model_card.render_model_card(bundles.read_bundle(folder))


def test_semantic_cache_is_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--semantic-cache", "0.5"]) == 0
    assert bundles.read_bundle(folder).generation == {"semantic_cache": 0.5}
    assert "mixed with 0.5 of the prompt's own" in (folder / "README.md").read_text()
    with pytest.raises(bundles.BundleError, match=r"in \[0, 1\)"):
        model_card.update_bundle(folder, semantic_cache=1.0)
    model_card.update_bundle(folder, semantic_cache=0.0)
    assert "generation" not in json.loads((folder / "bundle.json").read_text())


def test_context_slide_is_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--context-slide", "evict"]) == 0
    assert bundles.read_bundle(folder).generation == {"context_slide": "evict"}
    assert "dropping the older half of its KV cache" in (folder / "README.md").read_text()
    before = (folder / "bundle.json").read_text()
    with pytest.raises(bundles.BundleError, match="refill or evict"):
        model_card.update_bundle(folder, context_slide="forget")
    assert (folder / "bundle.json").read_text() == before
    assert main(["models", "card", str(folder), "--context-slide", "refill"]) == 0
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    assert "KV cache" not in (folder / "README.md").read_text()


def test_beat_guidance_is_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--beat-guidance", "strength=2.5"]) == 0
    settings = bundles.read_bundle(folder).generation["beat_guidance"]
    assert settings["enabled"] is True and settings["strength"] == 2.5
    assert settings["off_beat"] == 0.3  # the default where not given
    card = (folder / "README.md").read_text()
    assert "keeps to the prompt's beat" in card and "2.5 × its onset strength" in card
    before = (folder / "bundle.json").read_text()
    with pytest.raises(bundles.BundleError, match="strength"):
        model_card.update_bundle(folder, beat_guidance={"strength": -1})
    assert (folder / "bundle.json").read_text() == before
    with pytest.raises(SystemExit):  # argparse refuses it before anything is written
        main(["models", "card", str(folder), "--beat-guidance", "loud"])
    assert main(["models", "card", str(folder), "--beat-guidance", "on"]) == 0
    assert bundles.read_bundle(folder).generation["beat_guidance"]["strength"] == 3.0
    assert main(["models", "card", str(folder), "--beat-guidance", "off"]) == 0
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    assert "beat" not in (folder / "README.md").read_text()


def test_rank_by_is_recorded_checked_shown_and_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _trained_bundle(tmp_path)
    assert main(["models", "card", str(folder), "--rank-by", "voice"]) == 0
    assert bundles.read_bundle(folder).generation == {"rank_by": "voice"}
    card = (folder / "README.md").read_text()
    assert "## Best of N takes" in card and "the long-term spectrum of its voice" in card
    capsys.readouterr()
    for aspect, said in (
        ("rhythm", "the periodicity of its onsets (rhythm)"),
        ("pitch+rhythm", "the pitch-class profile and the periodicity of its onsets"),
    ):
        assert main(["models", "card", str(folder), "--rank-by", aspect]) == 0
        assert bundles.read_bundle(folder).generation == {"rank_by": aspect}
        assert said in (folder / "README.md").read_text()
    with pytest.raises(bundles.BundleError, match="rank_by must be voice or pitch or rhythm"):
        model_card.update_bundle(folder, rank_by="loudness")
    assert main(["models", "card", str(folder), "--rank-by", "none"]) == 0
    capsys.readouterr()
    assert "generation" not in json.loads((folder / "bundle.json").read_text())
    assert "Best of N" not in (folder / "README.md").read_text()
    data = json.loads((folder / "bundle.json").read_text())
    data["kind"] = "wavenet-vocoder"
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(bundles.BundleError, match="vocoder"):
        model_card.update_bundle(folder, rank_by="pitch")


def test_a_best_of_report_gets_its_own_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _trained_bundle(tmp_path)

    def report(best_of: int, cosine: float) -> Path:
        path = tmp_path / f"best{best_of}.json"
        settings = {"clips": 4, "best_of": best_of, "rank_by": "voice" if best_of > 1 else None}
        model = {"speaker_cosine": {"value": cosine, "target": ">= 0.8", "met": False}}
        path.write_text(json.dumps({"settings": settings, "speech_continuation": {"model": model}}))
        return path

    args = ["models", "card", str(folder), "--quality", str(report(1, 0.7))]
    assert main([*args, "--best-of-quality", str(report(4, 0.75))]) == 0
    metrics = bundles.read_bundle(folder).metrics
    assert metrics["quality_best_of"]["_best_of"] == 4
    assert metrics["quality_best_of"]["_rank_by"] == "voice"
    assert "_best_of" not in metrics["quality"]
    card = (folder / "README.md").read_text()
    one, four = card.index("## Measured quality (held-out"), card.index("best of 4 takes")
    assert one < four
    assert "| speech_continuation.model.speaker_cosine | 0.7 |" in card[one:four]
    assert "| speech_continuation.model.speaker_cosine | 0.75 |" in card[four:]
    # the best-of figures are not mistaken for a trainer's validation metrics
    assert "**quality_best_of**" not in card
    # a report of one take per prompt is refused as best-of figures
    assert main(["models", "card", str(folder), "--best-of-quality", str(report(1, 0.7))]) == 2
    assert "was not measured with --best-of N" in capsys.readouterr().err
    # candidate beginnings: a third table
    chosen = tmp_path / "candidates.json"
    model = {"speaker_cosine": {"value": 0.745, "target": ">= 0.8", "met": False}}
    settings = {"candidates": 4, "choose_after": 1.5}
    chosen.write_text(json.dumps({"settings": settings, "speech_continuation": {"model": model}}))
    assert main(["models", "card", str(folder), "--candidates-quality", str(chosen)]) == 0
    capsys.readouterr()
    card = (folder / "README.md").read_text()
    at = card.index("## Measured quality, 4 candidate beginnings per take")
    assert "the best kept after 1.5 s (`--candidates 4`)" in card[at:]
    assert "| speech_continuation.model.speaker_cosine | 0.745 |" in card[at:]
    assert "best of 4 takes" in card  # the other tables stay
    assert main(["models", "card", str(folder), "--candidates-quality", str(report(4, 0.7))]) == 2
    assert "was not measured with --candidates N" in capsys.readouterr().err


def test_candidates_are_recorded_checked_shown_and_removed(tmp_path: Path) -> None:
    folder = _trained_bundle(tmp_path)
    with pytest.raises(bundles.BundleError, match="needs rank_by"):
        model_card.update_bundle(folder, candidates=4)
    args = ["models", "card", str(folder), "--rank-by", "voice", "--candidates", "4"]
    assert main([*args, "--choose-after", "1.0"]) == 0
    generation = bundles.read_bundle(folder).generation
    assert generation == {"rank_by": "voice", "candidates": 4, "choose_after": 1.0}
    card = (folder / "README.md").read_text()
    assert "Each take starts as 4 candidate beginnings" in card and "after 1 s" in card
    for bad, message in (({"candidates": 9}, "1..8"), ({"choose_after": 0.2}, "0.5..60")):
        with pytest.raises(bundles.BundleError, match=message):
            model_card.update_bundle(folder, **bad)  # type: ignore[arg-type]
    model_card.update_bundle(folder, candidates=1)
    assert "candidates" not in bundles.read_bundle(folder).generation
    assert "`continue --candidates N`" in model_card.render_model_card(bundles.read_bundle(folder))
    data = json.loads((folder / "bundle.json").read_text())
    data["kind"] = "wavenet-vocoder"
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(bundles.BundleError, match="only continuation bundles"):
        model_card.update_bundle(folder, candidates=2)
