"""Shared pieces of the corpus builders: errors, external tools, seeds, small file helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Every corpus file is stored at this rate, mono.
CORPUS_RATE = 16_000
SPLITS = ("train", "valid", "test")


class CorpusError(Exception):
    """A corpus cannot be built as asked (missing tools, a folder built with other options...).

    The message is one line a user can act on, e.g. naming the Debian package to install.
    """


class ItemError(Exception):
    """One item could not be produced; the build records the reason and goes on."""


@dataclass(frozen=True, slots=True)
class Tool:
    """An external program the builders call, and how to get it."""

    name: str
    apt_package: str

    def path(self) -> str | None:
        """Absolute path of the executable, or ``None`` when it is not installed."""
        return shutil.which(self.name)


def tool_version(command: Sequence[str], apt_package: str | None = None) -> str:
    """A short version string: the Debian package version when dpkg knows it, else the first
    line of ``command`` (e.g. ``["flite", "--version"]``); ``"unknown"`` when neither works."""
    if apt_package and shutil.which("dpkg-query"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", apt_package],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                return f"{apt_package} {out.stdout.strip()}"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=10, check=False)
        for line in (out.stdout + out.stderr).splitlines():
            if line.strip():
                return line.strip()
    return "unknown"


def item_seed(seed: int, kind: str, index: int) -> int:
    """A 63-bit seed for item ``index`` of a ``kind`` corpus, stable across Python versions."""
    digest = hashlib.sha256(f"{kind}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def slug(text: str) -> str:
    """``text`` made safe as one path component (letters, digits, ``+-_.``)."""
    cleaned = re.sub(r"[^A-Za-z0-9+._-]+", "_", text).strip("._")
    return cleaned or "_"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # plain open: honours umask
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run_tool(
    command: Sequence[str],
    *,
    timeout: float,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run an external command under ``timeout`` seconds; raise :class:`ItemError` on a
    timeout, a missing program or a non-zero exit (with the last line of its stderr)."""
    try:
        proc = subprocess.run(
            list(command),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ItemError(f"{Path(command[0]).name} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise ItemError(f"{Path(command[0]).name} could not start: {exc}") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else "no message"
        raise ItemError(f"{Path(command[0]).name} exited {proc.returncode}: {detail}")
    return proc
