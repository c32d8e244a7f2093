"""Project files, autosave and crash recovery (no Qt here: plain files, unit-testable).

A project is ``NAME.agsproj`` (JSON, ``"format": 1``) plus the folder ``NAME_data/`` beside it
holding the audio:

- the edited clip as ``clip-<token>.wav`` (32-bit float WAV: bit-exact and fast to write, also
  for values beyond full scale; ``token`` names one state of the clip, so saving again without
  edits writes no audio);
- each take as ``take-<id>-<hash>.flac`` when its samples are exactly 24-bit values (FLAC is then
  lossless), else ``take-<id>-<hash>.wav`` (float): what is saved is always exactly what was
  there. Provenance, names, "kept" flags, prompt ranges are in the JSON;
- the undo history (``"undo"`` in the JSON, optional: older files have none), whose removed and
  overwritten samples are ``undo-*.npy`` files (see :mod:`~audiogen_studio.app.undo_history`,
  which also says how much of it is kept). A history that cannot be read or does not fit the
  clip is dropped with a note (:attr:`ProjectState.history_note`); the project still opens.

Saving is crash-safe: new audio files are written under new names first (each atomically, by
``audio.io.save``), then the JSON is replaced atomically (temporary file, fsync, rename), and only
then are audio files that the new JSON no longer references deleted. Whatever moment a crash
happens, the ``.agsproj`` on disk names complete files.

Autosave: every window owns an :class:`AutosaveSession`, a folder ``<recovery root>/<session>/``
(the root is ``recovery/`` in the user data dir) holding an ordinary project
(``autosave.agsproj``) and ``session.json`` (pid, host, title, the project it edits). The session
holds an exclusive lock on ``session.lock`` while its window lives; a clean close deletes the
folder. A folder whose lock nobody holds and which still has an autosave therefore belongs to a
session that did not close cleanly: :func:`find_recoverable` lists those, newest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import platformdirs

from audiogen_studio.app.takes_model import TakeRecord
from audiogen_studio.app.undo_history import (
    MAX_SAVED_BYTES,
    MAX_SAVED_COMMANDS,
    HistoryError,
    UndoHistory,
    is_history_file,
    json_ready,
    read_history,
    take_fields,
    take_from_fields,
    write_history,
)
from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip, FloatArray
from audiogen_studio.audio.errors import AudioError, ClipError

log = logging.getLogger(__name__)

APP_NAME = "audiogen-studio"
PROJECT_SUFFIX = ".agsproj"
FORMAT = 1
AUTOSAVE_NAME = "autosave" + PROJECT_SUFFIX
SESSION_FILE = "session.json"
LOCK_FILE = "session.lock"
_CHECK_CHUNK = 1 << 20


class ProjectError(Exception):
    """A project cannot be read or written; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ProjectState:
    """Everything a project file holds (immutable: safe to hand to a writer thread).

    Attributes:
        clip: the edited clip ``[C, T]``, or ``None`` (a project may hold only takes).
        clip_token: names this state of the clip (the audio file's stem); states with equal
            tokens must have equal samples. ``None``: derived from the samples' hash.
        takes: the session's takes in list order.
        selection: ``(start, end)`` frames, or ``None``.
        cursor: cursor frame.
        view: visible time range ``(t0, t1)`` in seconds, or ``None``.
        source_path: the audio file the clip was opened from, if any.
        settings: view settings (spectrogram scale, colormap, ...), JSON values.
        history: the undo history (the clip above is its state at ``history.index``), or
            ``None``.
        history_note: why a saved history was not loaded (``None`` when it was, or when there
            was none).
    """

    clip: Clip | None
    takes: tuple[TakeRecord, ...] = ()
    clip_token: str | None = None
    selection: tuple[int, int] | None = None
    cursor: int = 0
    view: tuple[float, float] | None = None
    source_path: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    history: UndoHistory | None = None
    history_note: str | None = None


def project_file(path: str | Path) -> Path:
    """``path`` with the ``.agsproj`` suffix (added when missing)."""
    p = Path(path)
    return p if p.suffix.lower() == PROJECT_SUFFIX else p.with_name(p.name + PROJECT_SUFFIX)


def data_dir(path: str | Path) -> Path:
    """The audio folder of a project: ``NAME_data`` beside ``NAME.agsproj``."""
    p = project_file(path)
    return p.with_name(p.name[: -len(PROJECT_SUFFIX)] + "_data")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a synced temporary file renamed over it."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """fsync a directory so a rename in it is durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _content_hash(samples: FloatArray, rate: int) -> str:
    """16 hex digits of BLAKE2b over the shape, rate and samples."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{samples.shape[0]}x{samples.shape[1]}@{rate}".encode())
    h.update(np.ascontiguousarray(samples).data)
    return h.hexdigest()


def is_exact_24bit(samples: FloatArray) -> bool:
    """True when every sample is ``k / 2**23`` with ``-2**23 <= k < 2**23``: FLAC-24 is lossless."""
    for lo in range(0, samples.shape[1], _CHECK_CHUNK):
        scaled = samples[:, lo : lo + _CHECK_CHUNK].astype(np.float64) * float(1 << 23)
        if scaled.size and (
            scaled.min() < -(1 << 23)
            or scaled.max() > (1 << 23) - 1
            or not np.array_equal(np.rint(scaled), scaled)
        ):
            return False
    return True


def _write_audio(clip: Clip, folder: Path, stem: str, *, allow_flac: bool) -> str:
    """Write ``clip`` losslessly as ``stem.flac`` or ``stem.wav`` unless it exists; return the
    file name."""
    flac = allow_flac and is_exact_24bit(clip.samples)
    name = stem + (".flac" if flac else ".wav")
    target = folder / name
    if not target.is_file():
        io.save(clip, target, overwrite=True, subtype="PCM_24" if flac else "FLOAT")
    return name


def _read_audio(folder: Path, name: str, entry: Mapping[str, Any], what: str) -> Clip:
    path = folder / name
    if Path(name).name != name or name.startswith("."):
        raise ProjectError(f"{what}: invalid audio file name {name!r}")
    if not path.is_file():
        raise ProjectError(f"{what}: audio file {path} is missing")
    try:
        clip = io.load(path)
    except AudioError as exc:
        raise ProjectError(f"{what}: {exc}") from exc
    expected = (entry.get("rate"), entry.get("channels"), entry.get("frames"))
    if expected != (clip.rate, clip.channels, clip.frames):
        raise ProjectError(
            f"{what}: {path.name} holds {clip.channels} ch × {clip.frames} frames at "
            f"{clip.rate} Hz, the project expects {expected[1]} ch × {expected[2]} frames at "
            f"{expected[0]} Hz"
        )
    metadata = entry.get("metadata")
    return Clip(clip.samples, clip.rate, metadata if isinstance(metadata, dict) else {})


def _audio_entry(clip: Clip, name: str) -> dict[str, Any]:
    return {
        "file": name,
        "rate": clip.rate,
        "channels": clip.channels,
        "frames": clip.frames,
        "metadata": json_ready(dict(clip.metadata)),
    }


# ------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------


def save_project(
    path: str | Path,
    state: ProjectState,
    *,
    max_history_records: int = MAX_SAVED_COMMANDS,
    max_history_bytes: int = MAX_SAVED_BYTES,
) -> Path:
    """Write ``state`` to ``path`` (``.agsproj`` added when missing) crash-safely.

    The undo history is saved within ``max_history_records`` records and
    ``max_history_bytes`` of samples (:meth:`UndoHistory.bounded`).

    Returns:
        The project file written.

    Raises:
        ProjectError: the folder cannot be created or a file cannot be written.
    """
    target = project_file(path)
    folder = data_dir(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "app": APP_NAME,
            "saved": time.time(),
            "clip": None,
            "selection": list(state.selection) if state.selection else None,
            "cursor": int(state.cursor),
            "view": list(state.view) if state.view else None,
            "source_path": state.source_path,
            "settings": json_ready(dict(state.settings)),
            "takes": [],
        }
        used: set[str] = set()
        if state.clip is not None:
            token = state.clip_token or _content_hash(state.clip.samples, state.clip.rate)
            name = _write_audio(state.clip, folder, f"clip-{token}", allow_flac=False)
            used.add(name)
            doc["clip"] = _audio_entry(state.clip, name)
        for take in state.takes:
            digest = _content_hash(take.output.samples, take.output.rate)
            name = _write_audio(take.output, folder, f"take-{take.id}-{digest}", allow_flac=True)
            used.add(name)
            doc["takes"].append({**take_fields(take), "audio": _audio_entry(take.output, name)})
        if state.history is not None and state.history.records:
            history = state.history.bounded(max_history_records, max_history_bytes)
            try:
                doc["undo"], files = write_history(history, folder)
            except ValueError as exc:  # an edit that cannot be saved: the rest is still saved
                log.warning("undo history not saved: %s", exc)
            else:
                used.update(files)
        _write_atomic(target, json.dumps(doc, indent=1).encode("utf-8"))
    except (OSError, AudioError, ClipError) as exc:
        raise ProjectError(f"cannot save project {target}: {exc}") from exc
    _collect_garbage(folder, used)
    return target


def _collect_garbage(folder: Path, used: set[str]) -> None:
    """Delete our audio files that the project no longer references (and stale temporaries)."""
    for entry in folder.iterdir():
        name = entry.name
        ours = (
            name.startswith(("clip-", "take-")) and name.endswith((".wav", ".flac"))
        ) or is_history_file(name)
        stale_tmp = name.startswith(".") and ".partial" in name
        if (ours and name not in used) or stale_tmp:
            with contextlib.suppress(OSError):
                entry.unlink()


def load_project(path: str | Path) -> ProjectState:
    """Read a project written by :func:`save_project`.

    Raises:
        ProjectError: missing or corrupt JSON, a newer format, missing or mismatched audio.
    """
    target = Path(path)
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProjectError(f"{target}: project file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectError(f"{target}: not a readable project file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("app") != APP_NAME:
        raise ProjectError(f"{target}: not an AudioGen Studio project")
    fmt = doc.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT or fmt < 1:
        raise ProjectError(
            f"{target}: project format {fmt!r} is not supported (this version reads {FORMAT});"
            " it was written by a newer AudioGen Studio"
        )
    folder = data_dir(target)
    try:
        clip = None
        token = None
        entry = doc.get("clip")
        if entry:
            clip = _read_audio(folder, str(entry["file"]), entry, "clip")
            token = Path(str(entry["file"])).stem.removeprefix("clip-")
        takes = []
        for t in doc.get("takes") or []:
            output = _read_audio(folder, str(t["audio"]["file"]), t["audio"], f"take {t['name']}")
            takes.append(take_from_fields(t, output))
        history, note = _load_history(doc.get("undo"), folder, clip)
        selection = doc.get("selection")
        view = doc.get("view")
        return ProjectState(
            clip=clip,
            takes=tuple(takes),
            clip_token=token,
            selection=(int(selection[0]), int(selection[1])) if selection else None,
            cursor=int(doc.get("cursor", 0)),
            view=(float(view[0]), float(view[1])) if view else None,
            source_path=doc.get("source_path"),
            settings=dict(doc.get("settings") or {}),
            history=history,
            history_note=note,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProjectError(f"{target}: malformed project file ({exc!r})") from exc


def _load_history(
    entry: Any, folder: Path, clip: Clip | None
) -> tuple[UndoHistory | None, str | None]:
    """The saved undo history, checked against ``clip``; ``(None, why)`` when unusable."""
    if entry is None:
        return None, None
    try:
        if not isinstance(entry, dict):
            raise HistoryError("the undo history is not an object")
        history = read_history(entry, folder)
        history.check(clip)
    except HistoryError as exc:
        log.warning("undo history of %s not restored: %s", folder, exc)
        return None, f"The undo history could not be restored: {exc}"
    return history, None


# ------------------------------------------------------------------------------------------
# autosave and recovery
# ------------------------------------------------------------------------------------------


def default_recovery_root() -> Path:
    """``recovery/`` in the user data dir (platformdirs)."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "recovery"


class _FileLock:
    """An exclusive, non-blocking lock on a file, released by the OS if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        """Try to take the lock; False if someone (this process included) holds it."""
        if self._file is not None:
            return True
        f = self.path.open("a+b")
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                if os.name == "nt":  # pragma: no cover - Windows
                    import msvcrt

                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
            f.close()


@dataclass(frozen=True, slots=True)
class RecoveryInfo:
    """An autosave left by a session that did not close cleanly."""

    folder: Path
    project_file: Path
    saved: float
    title: str
    project_path: Path | None
    pid: int | None

    def describe(self) -> str:
        """One line for the restore prompt."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.saved))
        where = f" (project {self.project_path})" if self.project_path else ""
        return f"{self.title or 'untitled'}{where}, autosaved {when}"


class AutosaveSession:
    """One window's recovery folder ``<root>/<id>/``; created, and locked, on the first write.

    :meth:`write` may run on a worker thread (one at a time); :meth:`close` and :meth:`abandon`
    are for the window's thread after the worker is idle.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_recovery_root()
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.folder = self.root / self.id
        self._lock = _FileLock(self.folder / LOCK_FILE)
        self.writes = 0

    @property
    def project_file(self) -> Path:
        """Where the autosave project goes."""
        return self.folder / AUTOSAVE_NAME

    def _open(self) -> None:
        if self._lock.held:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            raise ProjectError(f"recovery folder {self.folder} is locked by another session")

    def write(self, state: ProjectState, *, title: str, project_path: Path | None) -> Path:
        """Autosave ``state`` (crash-safe, see :func:`save_project`)."""
        self._open()
        info = {
            "format": FORMAT,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "title": title,
            "project_path": str(project_path) if project_path else None,
            "updated": time.time(),
        }
        try:
            _write_atomic(self.folder / SESSION_FILE, json.dumps(info, indent=1).encode())
        except OSError as exc:
            raise ProjectError(f"cannot write {self.folder / SESSION_FILE}: {exc}") from exc
        written = save_project(self.project_file, state)
        self.writes += 1
        return written

    def close(self) -> None:
        """Clean shutdown: delete the recovery folder and release the lock."""
        if self._lock.held:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._lock.release()

    def abandon(self) -> None:
        """Release the lock but keep the files: what a crash leaves behind (for tests)."""
        self._lock.release()


def _read_session(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _unlocked(folder: Path) -> Iterator[bool]:
    """Yield whether ``folder``'s session lock is free, holding it during the ``with``."""
    lock = _FileLock(folder / LOCK_FILE)
    try:
        free = lock.acquire()
    except OSError:
        free = False
    try:
        yield free
    finally:
        lock.release()


def find_recoverable(root: Path | None = None) -> list[RecoveryInfo]:
    """Autosaves of sessions that did not close cleanly (no live lock), newest first."""
    base = Path(root) if root is not None else default_recovery_root()
    if not base.is_dir():
        return []
    found: list[RecoveryInfo] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        autosave = folder / AUTOSAVE_NAME
        if not autosave.is_file():
            continue
        with _unlocked(folder) as free:
            if not free:
                continue  # a live session (this process or another)
        info = _read_session(folder)
        project = info.get("project_path")
        pid = info.get("pid")
        found.append(
            RecoveryInfo(
                folder=folder,
                project_file=autosave,
                saved=autosave.stat().st_mtime,
                title=str(info.get("title") or ""),
                project_path=Path(project) if project else None,
                pid=int(pid) if isinstance(pid, int) else None,
            )
        )
    found.sort(key=lambda r: r.saved, reverse=True)
    return found


def discard_recovery(info: RecoveryInfo) -> bool:
    """Delete a crashed session's folder (unless a live session holds it); True if deleted."""
    with _unlocked(info.folder) as free:
        if not free:
            return False
    shutil.rmtree(info.folder, ignore_errors=True)
    return not info.folder.exists()
