"""``audiogen-studio library list|search|show|export|import|gc``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from library_support import noise, tone

from audiogen_studio.audio import io
from audiogen_studio.cli.library import parse_when
from audiogen_studio.cli.main import main
from audiogen_studio.library import Filters, TakeInfo, TakeLibrary


@pytest.fixture
def lib_dir(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    with TakeLibrary(root, sync_audio=False) as lib:
        prompt = lib.add_prompt(tone(440, 0.2), source="riff.wav", range=(0, 3200))
        lib.add_take(
            tone(440, 0.6),
            TakeInfo(
                engine="wavenet",
                model="tiny",
                model_version="1.0",
                seed=7,
                name="Warm bell",
                tags=("bell",),
                rating=5,
                uid="aaaa" + "0" * 28,
                created=1_700_000_000.0,
            ),
            prompt_id=prompt.id,
            prompt_frames=3200,
        )
        lib.add_take(
            noise(1, 0.6),
            TakeInfo(
                engine="audiolm",
                model="speech",
                name="Hiss",
                tags=("noise",),
                rating=2,
                uid="bbbb" + "0" * 28,
                created=1_700_086_400.0,
            ),
        )
        lib.add_take(
            tone(445, 0.6),
            TakeInfo(
                engine="wavenet",
                model="tiny",
                name="Other bell",
                uid="cccc" + "0" * 28,
                created=1_700_172_800.0,
            ),
        )
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["library", *args])
    return code, capsys.readouterr().out


def test_list_and_filters(lib_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "list", "--library", str(lib_dir))
    assert code == 0
    lines = out.splitlines()
    assert [ln[:4] for ln in lines[:3]] == ["cccc", "bbbb", "aaaa"]  # newest first
    assert "★★★★★" in lines[2] and "#bell" in lines[2] and "(3 takes in the library" in out
    code, out = run(
        capsys,
        "list",
        "--library",
        str(lib_dir),
        "--engine",
        "wavenet",
        "--min-rating",
        "4",
        "--json",
    )
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["Warm bell"] and rows[0]["seed"] == 7
    # Warm bell was made 2023-11-14 22:13 UTC, Hiss a day later
    code, out = run(
        capsys, "list", "--library", str(lib_dir), "--json", "--until", "2023-11-15T00:00+00:00"
    )
    assert {r["name"] for r in json.loads(out)} == {"Warm bell"}
    code, out = run(
        capsys,
        "list",
        "--library",
        str(lib_dir),
        "--json",
        "--since",
        "2023-11-15T00:00+00:00",
        "--until",
        "2023-11-16T00:00+00:00",
    )
    assert {r["name"] for r in json.loads(out)} == {"Hiss"}


def test_search_by_words_and_by_sound(
    lib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "search", "--library", str(lib_dir), "bel", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} == {"Warm bell", "Other bell"}
    code, out = run(capsys, "search", "--library", str(lib_dir), "--like", "aaaa", "--json")
    rows = json.loads(out)
    assert rows[0]["name"] == "Other bell" and rows[0]["similarity"] > 0.9
    wav = io.save(tone(450, 0.5), tmp_path / "q.wav")
    code, out = run(capsys, "search", "--library", str(lib_dir), "--audio", str(wav))
    assert code == 0 and "similarity" in out.splitlines()[0] and "bell" in out.splitlines()[0]
    assert main(["library", "search", "--library", str(lib_dir)]) == 2  # nothing to search
    assert "nothing to search for" in capsys.readouterr().err


def test_show(lib_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "show", "--library", str(lib_dir), "aaaa")
    assert code == 0
    assert "Warm bell" in out and "tiny 1.0" in out and "seed:      7" in out
    assert "riff.wav frames 0-3200" in out and "0.200 s prompt + 0.400 s generated" in out
    code, out = run(capsys, "show", "--library", str(lib_dir), "bbbb", "--json")
    assert json.loads(out)["engine"] == "audiolm" and json.loads(out)["prompt"] is None
    assert main(["library", "show", "--library", str(lib_dir), "ffff"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no take 'ffff'" in err


def test_export_import_round_trip(
    lib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "bell.wav"
    code, out = run(capsys, "export", "--library", str(lib_dir), "aaaa", "-o", str(wav))
    assert code == 0 and io.load(wav).frames == 9600
    code, out = run(
        capsys,
        "export",
        "--library",
        str(lib_dir),
        "--engine",
        "wavenet",
        "-o",
        str(tmp_path / "out"),
    )
    assert code == 0 and "exported 2 takes" in out
    other = tmp_path / "other"
    code, out = run(
        capsys,
        "import",
        "--library",
        str(other),
        str(tmp_path / "out"),
        str(wav),
        "--tag",
        "from-file",
    )
    assert code == 0 and "imported 3 takes" in out
    with TakeLibrary(other) as lib:
        assert lib.count() == 3
        imported = lib.list_takes(Filters(engine="import"))
        assert [e.name for e in imported] == ["bell"] and imported[0].tags == ("from-file",)
        np.testing.assert_allclose(
            lib.audio(imported[0].uid).samples, io.load(wav).samples, atol=2**-15
        )
    code, out = run(capsys, "import", "--library", str(other), str(tmp_path / "out"))
    assert "imported 0 takes, 2 already there" in out


def test_gc_purges_the_trash(lib_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TakeLibrary(lib_dir) as lib:
        lib.delete("bbbb")
    code, out = run(capsys, "list", "--library", str(lib_dir), "--trash")
    assert out.startswith("bbbb") and "1 takes in the trash" in out
    code, out = run(capsys, "gc", "--library", str(lib_dir), "--dry-run", "--grace", "0")
    assert "would remove 1 deleted takes" in out and "1 unused audio files" in out
    code, out = run(capsys, "gc", "--library", str(lib_dir), "--grace", "0", "--check")
    assert code == 0 and "removed 1 deleted takes" in out and "healthy" in out
    code, out = run(capsys, "list", "--library", str(lib_dir), "--trash", "--json")
    assert json.loads(out) == []


def test_when_parsing() -> None:
    assert parse_when("2024-03-01") == pytest.approx(
        __import__("datetime").datetime(2024, 3, 1).timestamp()
    )
    now = __import__("time").time()
    assert parse_when("2d") == pytest.approx(now - 2 * 86400, abs=5)
    with pytest.raises(Exception, match="not a date"):
        parse_when("yesterday-ish")


def test_environment_variable_and_module_entry_point(lib_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "audiogen_studio", "library", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "AUDIOGEN_LIBRARY": str(lib_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3
