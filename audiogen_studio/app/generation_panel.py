"""The generation dock: engine, model (with its model card), settings, Generate / Stop, progress.

The prompt is the editor's **selection** (or the whole clip when nothing is selected); for
"WaveNet vocoding of the selection" the selection is re-synthesized. Generate hands a
:class:`~audiogen_studio.engine.api.GenerationRequest` to the long-lived generation thread
(:class:`~audiogen_studio.app.generation.GenerationController`): take 0 plays while it is
generated, its waveform grows in the live view, the progress bar shows seconds done and the
real-time factor (RTF, compute seconds per audio second), and Stop keeps the partial takes.

Every take that produced audio becomes a :class:`~audiogen_studio.app.takes_model.TakeRecord` in
``window.takes`` with its provenance (engine, model name and version, seed, temperature, top-k,
top-p, seconds, device, RTF, complete, prompt range, time); the takes panel lists, auditions and
inserts them.

With an AudioLM model that adapts to the prompt, the panel prepares the prompt ahead of Generate:
it polls the prompt (clip, selection, model, device, adaptation steps) every
:data:`PROMPT_POLL_MS`, and once that has not changed for :data:`PREPARE_DELAY_MS` the
generation thread adapts the model to it (:meth:`GenerationController.prepare`); the progress
bar says so. A Generate of that prompt then streams at once instead of after the adaptation
(~0.8 s for the speech bundle on a 2-core CPU), and a prepare of a prompt that has changed since
is cancelled.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app.generation import (
    GenerationController,
    GenerationResult,
    PreparedPrompt,
)
from audiogen_studio.app.panel_support import EditorWindow
from audiogen_studio.app.takes_model import TakeList, TakeRecord, new_take_id
from audiogen_studio.app.views import WaveformView
from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine import bundles
from audiogen_studio.engine.adaptation_settings import default_adapt_steps
from audiogen_studio.engine.api import (
    MAX_ADAPT_STEPS,
    MAX_CANDIDATES,
    MAX_TAKES,
    GenerationError,
    GenerationRequest,
    Mode,
)
from audiogen_studio.engine.beat_guidance import BeatGuidanceSettings, can_keep_beat
from audiogen_studio.engine.level_match import LevelMatchSettings
from audiogen_studio.engine.take_ranking import ASPECTS
from audiogen_studio.engine.takes import Take

log = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
CHUNK_SECONDS = 0.1
PRELOAD_DELAY_MS = 300  # after the model or device selection last changed
PROMPT_POLL_MS = 250  # how often the panel looks whether the prompt changed
PREPARE_DELAY_MS = 800  # the prompt is prepared once it has not changed for this long
LIVE_VIEW_HEIGHT = 140


#: the "Rank by" choices (``engine/take_ranking.py``), as the combo box shows them
_RANK_LABELS: dict[str, str] = {
    "voice": "voice",
    "pitch": "pitch (key, harmony)",
    "rhythm": "rhythm",
    "pitch+rhythm": "pitch and rhythm",
}


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """One entry of the engine menu.

    Attributes:
        key: short name (``--engine`` of ``audiogen-studio gui``, ``provenance["engine"]``).
        label: what the menu shows.
        mode: the request mode.
        kinds: bundle kinds that serve it.
    """

    key: str
    label: str
    mode: Mode
    kinds: tuple[str, ...]


ENGINES = (
    EngineChoice("audiolm", "AudioLM continuation", "continue", ("audiolm",)),
    EngineChoice("wavenet", "WaveNet continuation", "continue", ("wavenet",)),
    EngineChoice(
        "wavenet-vocoder", "WaveNet vocoding of the selection", "vocode", ("wavenet-vocoder",)
    ),
)
ENGINE_KEYS = tuple(e.key for e in ENGINES)


def engine_choice(key: str) -> EngineChoice:
    """The :data:`ENGINES` entry named ``key``; ``KeyError`` listing the valid keys."""
    for choice in ENGINES:
        if choice.key == key:
            return choice
    raise KeyError(f"unknown engine {key!r} (use {', '.join(ENGINE_KEYS)})")


def _flat(data: Mapping[str, Any], limit: int = 14) -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        if isinstance(value, Mapping | list):
            continue  # nested tables (history, configs) are for files, not tooltips
        if isinstance(value, float):
            value = f"{value:.4g}"
        rows.append((str(key), str(value)))
    return rows[:limit]


def model_card(bundle: bundles.BundleInfo) -> str:
    """The bundle's model card as rich text: description, training, metrics."""
    parts = [
        f"<b>{escape(bundle.name)} {escape(bundle.version)}</b> — {escape(bundle.kind)}, "
        f"{bundle.sample_rate} Hz",
    ]
    if bundle.description:
        parts.append(f"<p>{escape(bundle.description)}</p>")
    for title, table in (("Training", bundle.training), ("Metrics", bundle.metrics)):
        rows = _flat(table)
        if rows:
            cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
            parts.append(f"<p><i>{title}</i></p><table>{cells}</table>")
    parts.append(f"<p><small>{escape(str(bundle.path))}</small></p>")
    return "".join(parts)


def model_summary(bundle: bundles.BundleInfo) -> str:
    """One line under the model menu: kind, rate and the headline metrics."""
    bits = [f"{bundle.kind}, {bundle.sample_rate} Hz"]
    for key, value in _flat(bundle.metrics, limit=3):
        bits.append(f"{key} {value}")
    return " · ".join(bits)


def take_record(
    take: Take,
    result: GenerationResult,
    *,
    engine: str,
    model_name: str,
    model_version: str,
    prompt_range: tuple[int, int],
    name: str,
) -> TakeRecord:
    """A finished (or partial) engine take as a session :class:`TakeRecord` with provenance."""
    request = result.request
    continuation = take.mode == "continue"
    provenance: dict[str, Any] = {
        "engine": engine,
        "mode": take.mode,
        "model": model_name,
        "model_version": model_version,
        "model_path": result.model,
        "seed": take.seed,
        "take_index": take.index,
        "temperature": request.temperature,
        "top_k": request.top_k,
        "top_p": request.top_p,
        "adapt_steps": request.adapt_steps,
        "candidates": request.candidates,
        "level_match": request.level_match,
        "beat_guidance": request.beat_guidance,
        "seconds": request.seconds if continuation else request.prompt.duration,
        "generated_seconds": round(take.generated.duration, 6),
        "device": result.device,
        "device_used": result.device_used,
        "rtf": round(result.rtf, 4),
        "complete": take.complete,
        "prompt_range": list(prompt_range),
        "prompt_seconds": round(take.prompt.duration, 6),
        "sample_rate": take.output.rate,
        "model_rate": result.sample_rate,
        "time": datetime.fromtimestamp(result.created).astimezone().isoformat(timespec="seconds"),
    }
    if take.index in result.matches:
        order = sorted(result.matches, key=lambda i: -result.matches[i])
        provenance.update(
            rank_by=result.rank_by,
            match=round(result.matches[take.index], 4),
            match_rank=order.index(take.index) + 1,
            match_of=len(order),
        )
    return TakeRecord(
        id=new_take_id(),
        name=name,
        output=take.output,
        prompt_frames=take.prompt.frames if continuation else 0,
        prompt_range=prompt_range,
        provenance=provenance,
        created=result.created,
    )


@dataclass(frozen=True, slots=True)
class _Job:
    request: GenerationRequest
    engine: EngineChoice
    bundle: bundles.BundleInfo
    prompt_range: tuple[int, int]


class GenerationPanel(QWidget):
    """Generation settings, Generate / Stop, progress and the live take view.

    Talks to the generation thread only through ``controller``.

    Args:
        controller: the window's :class:`GenerationController`.
        window: the main window (:class:`~audiogen_studio.app.panel_support.EditorWindow`); when
            omitted it is found among the panel's parents once the panel is docked.
        prompt, report: for a host that is not an editor window: the clip to continue and how
            errors are reported; takes then collect in the panel's own :attr:`takes`.
        apply_clip: accepted for older callers and unused (the takes panel inserts takes).
    """

    def __init__(
        self,
        controller: GenerationController,
        *,
        window: EditorWindow | None = None,
        prompt: Callable[[], Clip | None] | None = None,
        apply_clip: Callable[[Clip], None] | None = None,
        report: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self.controller = controller
        self._window = window
        self._prompt_fn = prompt
        self._apply_clip = apply_clip
        self._report = report
        self._own_takes = TakeList()
        self._job: _Job | None = None
        self._bundles: dict[str, bundles.BundleInfo] = {}
        self._devices_probed = False
        self.last_result: GenerationResult | None = None

        self.engine_combo = QComboBox()
        for choice in ENGINES:
            self.engine_combo.addItem(choice.label, choice.key)
        self.model_combo = QComboBox()
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        self.model_info.setTextFormat(Qt.TextFormat.PlainText)
        self.model_info.setStyleSheet("color: palette(mid);")
        self.seconds_spin = QDoubleSpinBox(decimals=1, minimum=0.1, maximum=600.0, value=4.0)
        self.seconds_spin.setSuffix(" s")
        self.temperature_spin = QDoubleSpinBox(
            decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05, value=1.0
        )
        self.temperature_spin.setToolTip(
            "Softmax temperature (0 = always the likeliest). AudioLM models multiply it by "
            "their tuned per-stage factors (see the model card)."
        )
        self.top_k_spin = QSpinBox(minimum=0, maximum=4096, value=0)
        self.top_k_spin.setSpecialValueText("off")
        self.top_p_spin = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.top_p_spin.setSpecialValueText("off")
        self.top_p_spin.setValue(0.0)
        self.adapt_spin = QSpinBox(minimum=0, maximum=MAX_ADAPT_STEPS, value=0)
        self.adapt_spin.setSpecialValueText("off")
        self.adapt_spin.setSuffix(" steps")
        self.adapt_spin.setToolTip(
            "AudioLM: before generating, fine-tune a copy of the model on the prompt for this "
            "many steps, so the continuation keeps its voice or instrument (0.03-0.1 s a step "
            "on a 2-core CPU, paid once per prompt: done as soon as the prompt settles, so "
            "Generate starts at once). Set to the model's default when a model is chosen."
        )
        self.candidates_spin = QSpinBox(minimum=1, maximum=MAX_CANDIDATES, value=1)
        self.candidates_spin.setSpecialValueText("off")
        self.candidates_spin.setToolTip(
            "Continuation: sample this many beginnings of each take together, keep the one that "
            "matches the prompt best (its voice, or its key for music) once the model's first "
            "seconds are generated, and go on with it alone. A take's audio starts after that "
            "choice. Set to the model's default when a model is chosen."
        )
        self.rank_combo = QComboBox()
        for aspect, shown in _RANK_LABELS.items():
            self.rank_combo.addItem(shown, aspect)
        self.rank_combo.setToolTip(
            "Continuation: what the takes and the candidate beginnings are ranked by against the "
            "prompt: its voice (the long-term spectrum), its pitch classes (key and harmony), its "
            "rhythm (how often and at which periods its onsets recur), or pitch and rhythm. With "
            "several takes the best match is marked. Set to the model's default when a model is "
            "chosen."
        )
        self.level_check = QCheckBox("keep the prompt's level")
        self.level_check.setToolTip(
            "AudioLM: scale the continuation, smoothly as it streams, so that it stays at the "
            "level of the prompt's last seconds (the model's own level can differ from it). Set "
            "to the model's default when a model is chosen."
        )
        self.beat_check = QCheckBox("keep the prompt's beat")
        self.beat_check.setToolTip(
            "AudioLM music: estimate the prompt's tempo and beat, and make attacks likelier on "
            "its beats while the continuation is sampled, so the take keeps the tempo (at some "
            "cost in harmony). Set to the model's default when a model is chosen."
        )
        self.seed_spin = QSpinBox(minimum=0, maximum=MAX_SEED, value=random.randint(0, 99999))
        self.new_seed_button = QPushButton("New seed")
        self.takes_spin = QSpinBox(minimum=1, maximum=MAX_TAKES, value=1)
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto", "auto")
        self.device_combo.addItem("cpu", "cpu")
        self.device_combo.setToolTip(
            "auto = the CPU: generation runs one token or sample at a time, and the CPU's fused "
            "steps outrun a GPU's for the default models; choose a GPU for many takes or large "
            "models"
        )
        self.generate_button = QPushButton("Generate")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("idle")
        self.prompt_label = QLabel("")
        self.prompt_label.setWordWrap(True)
        self.status_label = QLabel("")
        self.playback_label = QLabel("")
        self.status_label.setWordWrap(True)
        # Text that comes and goes must not move the layout: a resized dock makes the window
        # relayout and repaint every view at once (a ~100 ms GUI stall at each Generate). The
        # labels keep their lines reserved and never widen the dock.
        line = self.fontMetrics().lineSpacing()
        for label, lines in (
            (self.playback_label, 1),
            (self.prompt_label, 2),
            (self.status_label, 3),
        ):
            label.setMinimumHeight(lines * line)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.live_view = WaveformView()  # take 0's continuation growing while it is generated
        self.live_view.placeholder.setText("live take")
        self.live_view.setFixedHeight(LIVE_VIEW_HEIGHT)  # a stable layout (see the labels)
        self.live_view.setLabel("left", "")
        self.live_view.setLabel("bottom", "")
        self._live_frames = -1
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(150)
        self._live_timer.timeout.connect(self.update_live_view)

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.new_seed_button)
        form = QFormLayout()
        form.addRow("Engine", self.engine_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.model_info)
        form.addRow("Seconds", self.seconds_spin)
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Top-k", self.top_k_spin)
        form.addRow("Top-p", self.top_p_spin)
        form.addRow("Adapt to prompt", self.adapt_spin)
        form.addRow("Candidates", self.candidates_spin)
        form.addRow("Rank by", self.rank_combo)
        form.addRow("Level", self.level_check)
        form.addRow("Beat", self.beat_check)
        form.addRow("Seed", seed_row)
        form.addRow("Takes", self.takes_spin)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.playback_label)
        layout.addWidget(self.live_view)
        layout.addWidget(self.prompt_label)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        # the selected model's engine is loaded ahead of Generate, once the choice settles
        self._preload_timer = QTimer(self)
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(PRELOAD_DELAY_MS)
        self._preload_timer.timeout.connect(self.preload_selected)
        self.engine_combo.currentIndexChanged.connect(lambda _: self.refresh_models())
        self.model_combo.currentIndexChanged.connect(lambda _: self._show_model_card())
        self.model_combo.currentIndexChanged.connect(lambda _: self._preload_timer.start())
        self.device_combo.currentIndexChanged.connect(lambda _: self._preload_timer.start())
        # the prompt is adapted to ahead of Generate, once it settles (module doc)
        self._watched_key: tuple[object, ...] | None = None
        self._preparing_key: tuple[object, ...] | None = None
        self._preparing_request: GenerationRequest | None = None
        self._prepared_key: tuple[object, ...] | None = None
        self._prompt_poll = QTimer(self)
        self._prompt_poll.setInterval(PROMPT_POLL_MS)
        self._prompt_poll.timeout.connect(self._watch_prompt)
        self._prepare_timer = QTimer(self)
        self._prepare_timer.setSingleShot(True)
        self._prepare_timer.setInterval(PREPARE_DELAY_MS)
        self._prepare_timer.timeout.connect(self.prepare_prompt)
        controller.prepared.connect(self._on_prepared)
        self._prompt_poll.start()
        self.new_seed_button.clicked.connect(self.new_seed)
        self.generate_button.clicked.connect(self.generate)
        self.stop_button.clicked.connect(self.stop)
        controller.progress.connect(self._on_progress)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.playback_unavailable.connect(self._on_playback_unavailable)
        controller.playback_state.connect(self._on_playback_state)
        controller.devices_found.connect(self._on_devices_found)
        self._select_first_engine_with_models()
        self.refresh_models()

    # -- the host window --------------------------------------------------------------------

    @property
    def editor(self) -> EditorWindow | None:
        """The editor window: given, or the first parent that has takes (once docked)."""
        if self._window is None:
            parent = self.parentWidget()
            while parent is not None and not hasattr(parent, "takes"):
                parent = parent.parentWidget()
            if parent is not None:
                self._window = parent  # type: ignore[assignment]
        return self._window

    @property
    def takes(self) -> TakeList:
        """Where finished takes go: ``window.takes`` (or the panel's own list without one)."""
        editor = self.editor
        takes = getattr(editor, "takes", None) if editor is not None else None
        return takes if isinstance(takes, TakeList) else self._own_takes

    def _report_error(self, title: str, message: str) -> None:
        editor = self.editor
        if editor is not None:
            editor.report_error(title, message)
        elif self._report is not None:
            self._report(title, message)

    # -- settings ---------------------------------------------------------------------------

    @property
    def engine(self) -> EngineChoice:
        """The selected engine."""
        return engine_choice(str(self.engine_combo.currentData()))

    @property
    def mode(self) -> str:
        """``"continue"`` or ``"vocode"``."""
        return self.engine.mode

    def set_engine(self, key: str) -> None:
        """Select engine ``key`` (``"audiolm"``, ``"wavenet"``, ``"wavenet-vocoder"``)."""
        engine_choice(key)  # KeyError for unknown keys
        self.engine_combo.setCurrentIndex(self.engine_combo.findData(key))

    def select_model(self, name_or_path: str, *, switch_engine: bool = True) -> bool:
        """Select a model by bundle name (search path) or folder; False if there is none.

        With ``switch_engine`` the engine follows the bundle's kind; otherwise a bundle the
        current engine cannot use is not selected.
        """
        try:
            info = bundles.find_bundle(name_or_path)
        except bundles.BundleError:
            return False
        if info.kind not in self.engine.kinds:
            choice = next((e for e in ENGINES if info.kind in e.kinds), None)
            if choice is None or not switch_engine:
                return False
            self.set_engine(choice.key)
        wanted = info.path.resolve()
        for i in range(self.model_combo.count()):
            listed = self._bundles.get(str(self.model_combo.itemData(i)))
            if listed is not None and listed.path.resolve() == wanted:
                self.model_combo.setCurrentIndex(i)
                return True
        self._add_model(info)  # a bundle folder outside the search path
        self.model_combo.setEnabled(True)
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        self._update_buttons()
        return True

    def _select_first_engine_with_models(self) -> None:
        kinds = {b.kind for b in bundles.list_bundles()}
        for i, choice in enumerate(ENGINES):
            if kinds.intersection(choice.kinds):
                self.engine_combo.setCurrentIndex(i)
                return

    def refresh_models(self) -> None:
        """Fill the model menu with installed bundles of the kinds the engine needs."""
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self._bundles = {}
        for b in bundles.list_bundles():
            if b.kind in self.engine.kinds:
                self._add_model(b)
        if self.model_combo.count() == 0:
            self.model_combo.addItem(f"No {self.engine.label.split()[0]} models installed", None)
            self.model_combo.setEnabled(False)
        else:
            self.model_combo.setEnabled(True)
            index = self.model_combo.findData(current)
            if index >= 0:
                self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        self._show_model_card()
        self._update_buttons()
        self._preload_timer.start()

    def _add_model(self, b: bundles.BundleInfo) -> None:
        key = str(b.path)
        self._bundles[key] = b
        self.model_combo.addItem(f"{b.name} {b.version} ({b.sample_rate} Hz)", key)
        self.model_combo.setItemData(
            self.model_combo.count() - 1, model_card(b), Qt.ItemDataRole.ToolTipRole
        )

    @property
    def bundle(self) -> bundles.BundleInfo | None:
        """The selected model bundle."""
        return self._bundles.get(str(self.model_combo.currentData()))

    def _show_model_card(self) -> None:
        b = self.bundle
        adapts = b is not None and b.kind == "audiolm"
        self.adapt_spin.setEnabled(adapts)
        if b is not None and adapts:
            self.adapt_spin.setValue(default_adapt_steps(b.generation))
        self.level_check.setEnabled(adapts)
        try:
            matches = (
                adapts
                and b is not None
                and (LevelMatchSettings.from_generation(b.generation).enabled)
            )
        except GenerationError:
            matches = False
        self.level_check.setChecked(bool(matches))
        keeps_beat = b is not None and adapts and can_keep_beat(b.components)
        self.beat_check.setEnabled(keeps_beat)
        try:
            beats = (
                b is not None
                and keeps_beat
                and BeatGuidanceSettings.from_generation(b.generation).enabled
            )
        except GenerationError:
            beats = False
        self.beat_check.setChecked(bool(beats))
        chooses = (
            b is not None
            and b.kind in ("audiolm", "wavenet")
            and b.generation.get("rank_by") in ASPECTS
        )
        self.candidates_spin.setEnabled(chooses)
        candidates = b.generation.get("candidates", 1) if b is not None and chooses else 1
        self.candidates_spin.setValue(candidates if isinstance(candidates, int) else 1)
        self.rank_combo.setEnabled(chooses)
        if chooses and b is not None:
            self.rank_combo.setCurrentIndex(self.rank_combo.findData(b.generation["rank_by"]))
        if b is None:
            hint = "Train one with 'audiogen-studio train', or see README: default models"
            self.model_info.setText(hint)
            self.model_info.setToolTip("")
            self.model_combo.setToolTip("")
            return
        card = model_card(b)
        self.model_info.setText(f"{model_summary(b)} (hover: model card)")
        self.model_info.setToolTip(card)
        self.model_combo.setToolTip(card)

    def new_seed(self) -> None:
        """Pick a fresh random seed."""
        self.seed_spin.setValue(random.randint(0, MAX_SEED))

    def showEvent(self, event: QShowEvent) -> None:
        if not self._devices_probed:
            self._devices_probed = True
            self.controller.probe_devices()  # torch is imported on the generation thread
        super().showEvent(event)

    def _on_devices_found(self, found: list[str]) -> None:
        current = self.device_combo.currentData()
        self.device_combo.clear()
        self.device_combo.addItem("auto", "auto")
        for name in found:
            self.device_combo.addItem(name.upper() if name != "cpu" else "cpu", name)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(current)))

    @property
    def device(self) -> str:
        """The compute device setting (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``)."""
        return str(self.device_combo.currentData())

    def _update_buttons(self) -> None:
        busy = self.controller.busy
        self.generate_button.setEnabled(not busy and self.bundle is not None)
        self.stop_button.setEnabled(busy)

    # -- the prompt -------------------------------------------------------------------------

    def prompt(self) -> tuple[Clip, tuple[int, int]] | None:
        """The prompt and its ``(start, end)`` frames in the editor's clip: the selection, or
        the whole clip when nothing is selected; ``None`` when no clip is open."""
        found = self._prompt_source()
        if found is None:
            return None
        clip, span = found
        if span == (0, clip.frames):
            return clip, span
        return edit.crop(clip, *span), span

    def _prompt_source(self) -> tuple[Clip, tuple[int, int]] | None:
        """The clip the prompt is cut from and the prompt's ``(start, end)`` frames in it."""
        editor = self.editor
        if editor is None:
            clip = self._prompt_fn() if self._prompt_fn is not None else None
            return None if clip is None else (clip, (0, clip.frames))
        clip = editor.clip
        if clip is None:
            return None
        selection = editor.selection() if hasattr(editor, "selection") else None
        if selection is not None:
            start, end = max(0, int(selection[0])), min(clip.frames, int(selection[1]))
            if end > start:
                return clip, (start, end)
        return clip, (0, clip.frames)

    # -- generation -------------------------------------------------------------------------

    def _request(self, prompt: Clip) -> GenerationRequest:
        """The request Generate would submit for ``prompt`` (``GenerationError`` if invalid)."""
        return GenerationRequest(
            prompt=prompt,
            seconds=self.seconds_spin.value(),
            mode=self.engine.mode,
            takes=self.takes_spin.value(),
            seed=self.seed_spin.value(),
            temperature=self.temperature_spin.value(),
            top_k=self.top_k_spin.value() or None,
            top_p=self.top_p_spin.value() or None,
            chunk_seconds=CHUNK_SECONDS,
            adapt_steps=self.adapt_spin.value() if self.adapt_spin.isEnabled() else None,
            candidates=(self.candidates_spin.value() if self.candidates_spin.isEnabled() else None),
            level_match=self.level_check.isChecked() if self.level_check.isEnabled() else None,
            beat_guidance=self.beat_check.isChecked() if self.beat_check.isEnabled() else None,
            rank_by=self.rank_combo.currentData() if self.rank_combo.isEnabled() else None,
        )

    def generate(self) -> bool:
        """Start generating from the prompt; False (with a message) if it cannot start."""
        bundle = self.bundle
        if bundle is None:
            self._fail(f"No model installed for {self.engine.label}")
            return False
        found = self.prompt()
        if found is None:
            self._fail("Open or record a clip first: it is the prompt")
            return False
        prompt, prompt_range = found
        try:
            request = self._request(prompt)
        except GenerationError as exc:
            self._fail(str(exc))
            return False
        key = self._prompt_key()
        if self._preparing_key is not None and self._preparing_key != key:
            self.controller.cancel_prepare()  # for a prompt that is gone: do not wait for it
        if not self.controller.generate(request, str(bundle.path), self.device):
            return False
        self._job = _Job(request, self.engine, bundle, prompt_range)
        self.progress_bar.setValue(0)
        choosing = (
            f", then choosing among {request.candidates} beginnings"
            if request.candidates and request.candidates > 1
            else ""
        )
        self.progress_bar.setFormat(
            f"loading model, adapting it to the prompt{choosing}…"
            if request.adapt_steps and (key is None or key != self._prepared_key)
            else f"starting{choosing}…"
        )
        self._live_frames = -1
        self._live_timer.start()
        rate = prompt.rate
        clip = self.editor.clip if self.editor is not None else prompt
        what = "whole clip" if clip is None or prompt_range == (0, clip.frames) else "selection"
        self.prompt_label.setText(
            f"Prompt: {what} {prompt_range[0] / rate:.2f}–{prompt_range[1] / rate:.2f} s "
            f"({prompt.duration:.2f} s)"
        )
        self.status_label.setText("")
        self._update_buttons()
        return True

    def stop(self) -> None:
        """Stop generating (the partial takes are kept) and stop the live playback."""
        self.controller.stop()
        if self.controller.busy:
            self.status_label.setText("stopping…")

    def _on_progress(self, done: float, total: float, rtf: float) -> None:
        self.progress_bar.setValue(round(1000 * min(1.0, done / total)) if total > 0 else 0)
        self.progress_bar.setFormat(f"{done:.1f} / {total:.1f} s · RTF {rtf:.2f}")

    def update_live_view(self) -> None:
        """Redraw the growing continuation and the live playhead (GUI thread, ~7 Hz)."""
        preview = self.controller.worker.preview
        if preview is None:
            return
        player = self.controller.worker.player
        frames = preview.frames
        view = self.live_view
        if frames != self._live_frames and frames > 0:
            if self._live_frames <= 0 or view.clip is None:
                view.set_clip(preview.clip())
            else:  # only the new frames: the peak pyramid grows instead of being rebuilt
                view.extend(preview.samples[:, self._live_frames : frames].copy())
            self._live_frames = frames
            extent = max(preview.total, frames) / preview.rate
            view.setLimits(xMin=0.0, xMax=extent)
            view.setXRange(0.0, extent, padding=0.0)
            view.redraw()
        if player is not None and not player.finished.is_set():
            view.set_playhead(player.position / preview.rate)
        else:
            view.set_playhead(None)
        if not self.controller.busy and (player is None or player.finished.is_set()):
            self._live_timer.stop()

    def _on_finished(self, result: GenerationResult) -> None:
        job, self._job = self._job, None
        self.last_result = result
        self.update_live_view()
        kept = [t for t in result.takes if t.generated.frames > 0]
        best = ""
        if job is not None:
            takes = self.takes
            for take in kept:
                record = take_record(
                    take,
                    result,
                    engine=job.engine.key,
                    model_name=job.bundle.name,
                    model_version=job.bundle.version,
                    prompt_range=job.prompt_range,
                    name=takes.next_name(),
                )
                takes.add(record)
                if record.provenance.get("match_rank") == 1:
                    best = f" · best {result.rank_by} match: {record.name}"
        partial = any(not t.complete for t in result.takes)
        self.status_label.setText(
            f"{len(kept)} take(s) {'kept (stopped early)' if partial else 'done'} · "
            f"{result.seconds_done:.1f} s in {result.elapsed:.1f} s (RTF {result.rtf:.2f}) "
            f"on {result.device_used}{best}"
            if kept
            else "stopped before any audio was generated"
        )
        if not partial:
            self.progress_bar.setValue(1000)
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self._job = None
        self._live_timer.stop()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("failed")
        self._fail(message)
        self._update_buttons()

    def _on_playback_unavailable(self, message: str) -> None:
        self.status_label.setText(message)

    def _on_playback_state(self, state: str) -> None:
        self.playback_label.setText(f"playback: {state}" if state else "")

    def _fail(self, message: str) -> None:
        self.status_label.setText(message)
        self._report_error("Generation failed", message)

    # -- preparing the prompt ahead of Generate (module doc) ----------------------------------

    def _prompt_key(self) -> tuple[object, ...] | None:
        """What the prompt's preparation depends on: model, device, adaptation steps and the
        prompt itself (the clip object, which edits replace, and the selected range); ``None``
        when there is nothing to prepare (no model that adapts, adaptation off, no clip)."""
        bundle = self.bundle
        if bundle is None or not self.adapt_spin.isEnabled() or self.adapt_spin.value() == 0:
            return None
        found = self._prompt_source()
        if found is None:
            return None
        clip, span = found
        steps = self.adapt_spin.value()
        return (str(bundle.path), self.device, steps, id(clip), clip.frames, span)

    def _watch_prompt(self) -> None:
        """Poll (every :data:`PROMPT_POLL_MS`): a changed prompt cancels the preparation of the
        old one and is prepared once it has settled."""
        key = self._prompt_key()
        if key == self._watched_key:
            return
        self._watched_key = key
        if self._preparing_key is not None and self._preparing_key != key:
            self.controller.cancel_prepare()
        if key is None or key == self._prepared_key:
            self._prepare_timer.stop()
        else:
            self._prepare_timer.start()

    def prepare_prompt(self) -> bool:
        """Adapt the selected model to the current prompt on the generation thread now (see
        the module doc); False when there is nothing to prepare, it is already prepared or
        being prepared, or a generation is running (it is tried again after that)."""
        key = self._prompt_key()
        if key is None or key in (self._prepared_key, self._preparing_key):
            return False
        if self.controller.busy:
            self._prepare_timer.start()  # after the generation
            return False
        found = self.prompt()
        bundle = self.bundle
        if found is None or bundle is None:
            return False
        try:
            request = self._request(found[0])
        except GenerationError:
            return False  # Generate reports it
        if not self.controller.prepare(request, str(bundle.path), self.device):
            return False
        self._preparing_key, self._preparing_request = key, request
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("adapting the model to the prompt…")
        return True

    def _on_prepared(self, report: PreparedPrompt) -> None:
        if report.request is not self._preparing_request:
            return  # an older prepare that was cancelled
        key, self._preparing_key, self._preparing_request = self._preparing_key, None, None
        if report.ready:
            self._prepared_key = key
        if self.controller.busy or self._job is not None:
            return  # the progress bar is Generate's now
        if report.ready:
            self.progress_bar.setFormat(f"ready: adapted to the prompt in {report.seconds:.1f} s")
        elif not report.cancelled:
            self.progress_bar.setFormat("idle")

    def preload_selected(self) -> bool:
        """Load the selected model's engine on the generation thread now (it is cached), so
        Generate starts without building it; False when there is nothing to load."""
        bundle = self.bundle
        if bundle is None:
            return False
        return self.controller.preload(str(bundle.path), self.engine.mode, self.device)

    def shutdown(self) -> None:
        """Stop the live view (the window shuts the controller down)."""
        self._preload_timer.stop()
        self._prompt_poll.stop()
        self._prepare_timer.stop()
        self._live_timer.stop()
