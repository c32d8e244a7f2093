"""A whole tiny AudioLM stack trained inside the test continues a four-note riff.

Codec (SoundStream-style, ``fit_tiny_codec``), semantic tokenizer (``fit_tiny_tokenizer``) and
the three token LMs (``train_lm``, the same code as ``audiogen-studio train lm-*``) are trained
on 7.7 s of a plucked A–C#–E–A' riff. Prompted with its first two bars, the engine's
continuation is judged on the decoded audio: the pitch of every note slot after the prompt must
be the riff's next note (within 3 %), for most slots of most takes. The same codec and tokenizer
with untrained LMs fail the same check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import write_lms, write_tokenizers
from riff_signal import NOTE_FRAMES, RATE, four_note_riff, pitch_errors

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.takes import collect
from audiogen_studio.training.codec_trainer import fit_tiny_codec
from audiogen_studio.training.lm_trainer import LMTrainOptions, train_lm
from audiogen_studio.training.semantic_trainer import fit_tiny_tokenizer

PROMPT_NOTES = 8
CONTINUATION_NOTES = 8
TAKES = 3


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(trained bundle, the same codec and tokenizer with untrained LMs)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("riff-audiolm")
    riff = four_note_riff(repeats=8)
    trained = root / "trained"
    codec = fit_tiny_codec(riff, RATE, steps=500, seed=0)
    tokenizer = fit_tiny_tokenizer(riff, RATE, steps=150, seed=0)
    layout = write_tokenizers(trained, codec, tokenizer, name="riff")
    io.save(Clip(riff, RATE), root / "riff.wav")
    windows = {"semantic": 100, "coarse": 50, "fine": 50}
    for stage, window in windows.items():
        train_lm(
            LMTrainOptions(
                stage=stage,  # type: ignore[arg-type]
                data=root / "riff.wav",
                bundle=trained,
                steps=400,
                batch=8,
                size="tiny",
                window=window,
                lr=3e-3,
                warmup=20,
                dropout=0.0,
                threads=1,
                progress=False,
                val_every=0,
                save_every=0,
            )
        )
    untrained = root / "untrained"
    untrained.mkdir()
    for name in ("codec.safetensors", "semantic.safetensors"):
        (untrained / name).write_bytes((trained / name).read_bytes())
    (untrained / "bundle.json").write_text(
        (trained / "bundle.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    write_lms(untrained, layout, windows, sample_rate=RATE, dim=64)
    return trained, untrained


def _correct_fraction(bundle: Path) -> list[float]:
    """Per take: fraction of continuation notes at the riff's next pitch (within 3 %)."""
    engine = load_engine(str(bundle), engine="audiolm", device="cpu")
    riff = four_note_riff(repeats=8, seed=100)  # other plucks than the training audio
    prompt = Clip(riff[: PROMPT_NOTES * NOTE_FRAMES], RATE)
    seconds = CONTINUATION_NOTES * NOTE_FRAMES / RATE
    request = GenerationRequest(
        prompt=prompt, seconds=seconds, takes=TAKES, seed=0, temperature=0.7
    )
    fractions = []
    for take in collect(engine, request):
        assert take.complete
        errors = pitch_errors(take.output.samples[0], first_note=PROMPT_NOTES)
        assert len(errors) == CONTINUATION_NOTES
        fractions.append(float(np.mean(errors < 0.03)))
    return fractions


@pytest.mark.slow
def test_trained_stack_continues_the_riff(stacks: tuple[Path, Path]) -> None:
    trained, untrained = stacks
    good = _correct_fraction(trained)
    assert np.mean(good) >= 0.6, good
    bad = _correct_fraction(untrained)
    assert np.mean(bad) <= 0.3, bad
