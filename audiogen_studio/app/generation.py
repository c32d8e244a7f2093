"""Generation on one long-lived worker thread, streamed into live playback (DESIGN.md §3).

:class:`GenerationWorker` lives on a single :class:`~PySide6.QtCore.QThread` that the window
creates once (through :class:`GenerationController`) and quits and waits for on close. Its slot
:meth:`GenerationWorker.generate` loads the engine for a model bundle (loaded engines are cached
by ``(model, mode, device)``), runs ``engine.stream(request, cancel)`` and, for every chunk:

- appends take 0's samples (converted to the prompt's channel count, at the model's rate) to a
  :class:`~audiogen_studio.audio.ringbuffer.RingBuffer` that a
  :class:`~audiogen_studio.audio.devices.Player` plays from after a 0.2 s pre-roll, so the
  continuation is heard while it is being generated;
- emits ``chunk_ready(take, start, n)`` and ``progress(seconds_done, seconds_total, rtf)``.

It ends with ``finished(GenerationResult)`` (a cancelled request gives the partial takes,
``complete=False``) or ``failed(message)``. A missing or broken output device never stops
generation: it is reported once through ``playback_unavailable(message)``.

Cancel is a :class:`threading.Event` made per request by the controller and set from the GUI
thread (Stop); the engine checks it between chunks. The GUI thread only draws.

Warm-up: half a second after the event loop starts (:data:`WARM_UP_DELAY_MS`, once the window
is up), the controller queues :meth:`GenerationWorker.warm_up`, so torch, numba and the fused
kernels are loaded (:mod:`~audiogen_studio.engine.warmup`) on the generation thread while the user
is still looking at the window, in pieces that leave the GIL to the GUI; the first Generate then
starts without the ~0.3-1.2 s event-loop stall that loading them used to cause. The device
probe and model preloads asked for before that wait for it; a request submitted earlier starts
it at once; every job queues behind it on the same thread.
The panel also asks the worker to :meth:`~GenerationController.preload` the selected model's
engine (loaded once, cached like a request's), so the first Generate does not build it either,
and, once the prompt has settled, to :meth:`~GenerationController.prepare` it: an AudioLM engine
adapts its LMs to the prompt then (``AudioLMEngine.prepare``, ~0.8 s on a 2-core CPU), so a
Generate of that prompt starts streaming at once instead of after the adaptation. A prepare is
cancelled between steps when the prompt changes, and a Generate queues behind one of its own
prompt.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from audiogen_studio.audio import devices, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.audio.ringbuffer import RingBuffer
from audiogen_studio.engine import bundles, warmup
from audiogen_studio.engine.api import Aspect, Engine, GenerationError, GenerationRequest
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.take_ranking import RankingError, bundle_aspect, match_score
from audiogen_studio.engine.takes import Take, TakeCollector

log = logging.getLogger(__name__)

PREROLL_SECONDS = 0.2
MAX_RING_SECONDS = 120.0  # longer generations throttle to real time once the ring is full
#: the warm-up starts this long after the event loop starts: while the window is built and
#: first painted, the main thread loads Qt plugins, and a ``dlopen`` there would wait for the
#: warm-up's (the loader lock), delaying the window by ~1 s
WARM_UP_DELAY_MS = 500


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """What one request produced, with what the takes' provenance needs.

    Attributes:
        takes: the engine's takes (``take.output`` is the prompt + continuation ``[C, T]``);
            partial (``complete=False``) when the request was stopped.
        request: the request as submitted.
        model: the model bundle (name or folder) the request named.
        engine_name: the engine's own name (``"<bundle> <version>"`` for bundles).
        device: the device setting of the request (``"auto"``, ``"cpu"`` ...).
        device_used: the device the engine computed on (``"cpu"``, ``"cuda"`` ...).
        sample_rate: the model's rate.
        seconds_done: seconds generated per take (at the model's rate).
        elapsed: wall-clock seconds from the first request step to the last chunk (model loading
            excluded).
        rtf: real-time factor: compute seconds per generated audio second (all takes together).
        cancelled: Stop was pressed.
        created: ``time.time()`` when generation ended.
        matches: take index → how well its continuation matches the prompt in ``rank_by``
            (:mod:`~audiogen_studio.engine.take_ranking`; higher is better), for requests of
            several takes with a bundle that names what to rank by; else empty.
        rank_by: the aspect (``take_ranking.ASPECTS``) when ``matches`` is filled.
    """

    takes: list[Take]
    request: GenerationRequest
    model: str
    engine_name: str
    device: str
    device_used: str
    sample_rate: int
    seconds_done: float
    elapsed: float
    rtf: float
    cancelled: bool
    created: float = field(default_factory=time.time)
    matches: dict[int, float] = field(default_factory=dict)
    rank_by: str | None = None


def _match_takes(
    model: str, takes: list[Take], rank_by: Aspect | None = None
) -> tuple[str | None, dict[int, float]]:
    """``(rank_by, {take index: match})`` of the continuations of several takes, by ``rank_by``
    or else what the bundle names to rank its takes by; ``(None, {})`` otherwise (one take,
    vocoding, neither names one, or a take too short to score)."""
    continuing = [t for t in takes if t.mode == "continue" and t.generated.frames > 0]
    if len(continuing) < 2:
        return None, {}
    try:
        aspect = rank_by or bundle_aspect(bundles.find_bundle(model).generation)
        if aspect is None:
            return None, {}
        return aspect, {
            t.index: match_score(t.prompt.samples, t.generated.samples, t.generated.rate, aspect)
            for t in continuing
        }
    except (bundles.BundleError, RankingError) as exc:
        log.info("takes not ranked: %s", exc)
        return None, {}


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """What :meth:`GenerationWorker.prepare` did.

    Attributes:
        request: the request it prepared for.
        ready: the engine holds what the request's stream starts with (an AudioLM engine: its
            LMs adapted to the prompt), so Generate starts at once.
        seconds: wall-clock seconds it took (engine loading included).
        cancelled: the prompt changed (or the app closed) before it finished.
        message: why it failed, when it did (a bad prompt, a broken model); a request reports
            the same error itself.
    """

    request: GenerationRequest
    ready: bool
    seconds: float
    cancelled: bool = False
    message: str = ""


class LivePreview:
    """Take 0's continuation as it grows: written by the worker, read by the GUI thread.

    ``samples`` is preallocated ``[C, capacity]`` float32 at ``rate``; frames ``[0, frames)``
    are final. The worker writes the rows first and publishes ``frames`` after, so a reader
    that takes ``frames`` once and copies ``samples[:, :frames]`` sees only finished audio.
    """

    def __init__(self, channels: int, rate: int, total: int) -> None:
        self.rate = rate
        self.total = total
        self.samples = np.zeros((channels, min(total, round(MAX_RING_SECONDS * rate))), np.float32)
        self.frames = 0

    def append(self, data: npt.NDArray[np.float32], start: int) -> None:
        """Store ``data [C, n]`` at frame ``start`` (the part that fits)."""
        end = min(start + data.shape[1], self.samples.shape[1])
        if end > start:
            self.samples[:, start:end] = data[:, : end - start]
            self.frames = end

    def clip(self) -> Clip:
        """A copy of the finished frames as a clip ``[C, frames]``."""
        n = self.frames
        return Clip(self.samples[:, :n].copy(), self.rate)


class GenerationWorker(QObject):
    """Runs requests on the generation thread; never touches widgets (see module doc).

    Args:
        playback: stream take 0 to the default output device while generating.
        preroll_seconds: audio buffered before playback starts.
    """

    chunk_ready = Signal(int, int, int)  # take, start frame (model rate), frames
    progress = Signal(float, float, float)  # seconds done, seconds total, real-time factor
    finished = Signal(object)  # GenerationResult
    failed = Signal(str)
    playback_unavailable = Signal(str)
    devices_found = Signal(object)  # list[str]: "cpu", then "cuda" / "mps" when torch has them
    warmed_up = Signal(object)  # warmup.WarmUpReport
    prepared = Signal(object)  # PreparedPrompt

    def __init__(self, *, playback: bool = True, preroll_seconds: float = PREROLL_SECONDS) -> None:
        super().__init__()
        self.playback = playback
        self.preroll_seconds = preroll_seconds
        self._engines: dict[tuple[str, str, str], Engine] = {}
        self._player: devices.Player | None = None
        self.preview: LivePreview | None = None
        #: set (from any thread) to end a running warm-up after its current piece
        self.stop_warm_up = threading.Event()

    # -- thread-safe accessors (called from the GUI thread) ---------------------------------

    @property
    def player(self) -> devices.Player | None:
        """The player of the latest request (``None`` when playback is off or unavailable)."""
        return self._player

    def stop_playback(self, only: devices.Player | None = None) -> None:
        """Stop the live playback, if any (safe from any thread); with ``only``, just when that
        player is still the current one (a finished player is not mistaken for a newer one)."""
        player = self._player
        if player is None or (only is not None and player is not only):
            return
        self._player = None
        player.stop()

    def engine(self, model: str, mode: str, device: str) -> Engine:
        """The cached engine for ``(model, mode, device)``, loading it on first use."""
        key = (model, mode, device)
        engine = self._engines.get(key)
        if engine is None:
            started = time.perf_counter()
            engine = load_engine(model, mode=mode, device=device)
            log.info("loaded %s for %s on %s in %.2f s", model, mode, device,
                     time.perf_counter() - started)  # fmt: skip
            self._engines[key] = engine
        return engine

    # -- the slots --------------------------------------------------------------------------

    @Slot()
    def warm_up(self) -> None:
        """Load torch, numba and the fused kernels now (see :mod:`~audiogen_studio.engine.warmup`);
        emits ``warmed_up(report)``. Pieces already done in this process are skipped."""
        report = warmup.warm_up(self.stop_warm_up)
        self.warmed_up.emit(report)

    @Slot(str, str, str)
    def preload(self, model: str, mode: str, device: str) -> None:
        """Load (and cache) the engine a request for ``model`` would use; errors are only
        logged here (a request for it reports them)."""
        if self.stop_warm_up.is_set():  # shutting down
            return
        try:
            self.engine(model, mode, device)
        except Exception as exc:
            log.info("preloading %s failed: %s", model, exc)

    @Slot(object, str, str, object)
    def prepare(
        self,
        request: GenerationRequest,
        model: str,
        device: str,
        cancel: threading.Event | None = None,
    ) -> None:
        """Do the per-prompt work ``request`` would start with, ahead of it (the engine's
        ``prepare``: an AudioLM engine adapts to the prompt); emits ``prepared``. Stops between
        steps once ``cancel`` is set; errors are only reported (a request reports them too)."""
        cancel = cancel if cancel is not None else threading.Event()
        started = time.perf_counter()
        ready, message = False, ""
        if not (cancel.is_set() or self.stop_warm_up.is_set()):
            try:
                engine = self.engine(model, request.mode, device)
                prepare = getattr(engine, "prepare", None)  # WaveNet engines have nothing to do
                ready = bool(prepare(request, cancel)) if prepare is not None else False
            except Exception as exc:
                log.info("preparing the prompt for %s failed: %s", model, exc)
                message = str(exc)
        seconds = time.perf_counter() - started
        self.prepared.emit(PreparedPrompt(request, ready, seconds, cancel.is_set(), message))

    @Slot()
    def probe_devices(self) -> None:
        """Emit ``devices_found`` with the compute devices torch reports (imports torch here,
        on the generation thread, so the GUI never waits for it)."""
        found = ["cpu"]
        try:
            import torch

            from audiogen_studio.models.device import mps_available

            if torch.cuda.is_available():
                found.append("cuda")
            if mps_available():
                found.append("mps")
        except Exception as exc:  # a broken torch install must not break the app
            log.warning("cannot probe compute devices: %s", exc)
        self.devices_found.emit(found)

    @Slot(object, str, str, object)
    def generate(
        self,
        request: GenerationRequest,
        model: str,
        device: str,
        cancel: threading.Event | None = None,
    ) -> None:
        """Generate ``request`` with bundle ``model`` on ``device``; emits the signals above."""
        cancel = cancel if cancel is not None else threading.Event()
        self.stop_playback()
        ring: RingBuffer | None = None
        try:
            engine = self.engine(model, request.mode, device)
            total = engine.expected_frames(request)
            rate = engine.sample_rate
            channels = request.prompt.channels if request.mode == "continue" else 1
            self.preview = preview = LivePreview(channels, rate, total)
            ring = self._start_playback(rate, channels, total) if self.playback else None
            collector = TakeCollector(request)
            last = request.takes - 1
            started = time.perf_counter()
            done = elapsed = 0.0
            rtf = 0.0
            for chunk in engine.stream(request, cancel):
                collector.add(chunk)
                if chunk.take == 0:
                    data = io.to_channels(Clip(chunk.samples, chunk.rate), channels).samples
                    preview.append(data, chunk.start)
                    if ring is not None:
                        self._feed(ring, data, cancel)
                self.chunk_ready.emit(chunk.take, chunk.start, chunk.frames)
                if chunk.take == last:
                    done = (chunk.start + chunk.frames) / rate
                    elapsed = time.perf_counter() - started
                    rtf = float(chunk.info.get("rtf", elapsed / done))
                    self.progress.emit(done, total / rate, rtf)
            takes = collector.takes(expected_frames=total)
            rank_by, matches = _match_takes(model, takes, request.rank_by)
            result = GenerationResult(
                takes=takes,
                request=request,
                model=model,
                engine_name=str(getattr(engine, "name", model)),
                device=device,
                device_used=str(getattr(engine, "device", device)),
                sample_rate=rate,
                seconds_done=done,
                elapsed=elapsed,
                rtf=rtf,
                cancelled=cancel.is_set(),
                matches=matches,
                rank_by=rank_by,
            )
        except (GenerationError, AudioError) as exc:
            self._abandon(ring)
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # never leave the GUI waiting for an answer
            log.exception("generation failed")
            self._abandon(ring)
            self.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
            return
        if ring is not None:
            ring.close()  # the player plays out what is buffered, then finishes
        self.finished.emit(result)

    # -- playback helpers --------------------------------------------------------------------

    def _start_playback(self, rate: int, channels: int, total: int) -> RingBuffer | None:
        capacity = max(1, min(total, round(MAX_RING_SECONDS * rate)))
        ring = RingBuffer(capacity, channels)
        try:
            player = devices.Player(
                rate=rate,
                channels=channels,
                buffer=ring,
                latency="low",
                preroll_frames=min(capacity, round(self.preroll_seconds * rate)),
            )
            player.start()
        except (AudioError, ValueError) as exc:
            log.warning("playback unavailable: %s", exc)
            self.playback_unavailable.emit(f"playback unavailable: {exc}")
            return None
        self._player = player
        return ring

    def _feed(
        self, ring: RingBuffer, data: npt.NDArray[np.float32], cancel: threading.Event
    ) -> None:
        if ring.closed:
            return
        done = 0
        while done < data.shape[1] and not cancel.is_set():
            done += ring.write_clip_samples(data[:, done:], block=True, timeout=0.05)
            if self._player is None:  # playback stopped: stop feeding it
                return

    def _abandon(self, ring: RingBuffer | None) -> None:
        if ring is not None and not ring.closed:
            ring.close()
        self.stop_playback()


class GenerationController(QObject):
    """Owns the generation thread and its worker; the GUI's only way to talk to them.

    Signals are re-emitted in the GUI thread: ``chunk_ready``, ``progress``,
    ``playback_unavailable``, ``devices_found`` as the worker's; ``finished(GenerationResult)``
    and ``failed(str)`` after :attr:`busy` is cleared, so a slot connected to them may start the
    next request.
    """

    chunk_ready = Signal(int, int, int)
    progress = Signal(float, float, float)
    finished = Signal(object)
    failed = Signal(str)
    playback_unavailable = Signal(str)
    playback_state = Signal(str)  # "buffering" / "playing" / "" (stopped or finished)
    devices_found = Signal(object)  # list[str], after probe_devices()
    warmed_up = Signal(object)  # warmup.WarmUpReport, after the start-up warm-up
    prepared = Signal(object)  # PreparedPrompt, after prepare()
    _submit = Signal(object, str, str, object)
    _prepare = Signal(object, str, str, object)
    _probe = Signal()
    _warm = Signal()
    _preload = Signal(str, str, str)

    def __init__(
        self, parent: QObject | None = None, *, playback: bool = True, warm_up: bool = True
    ) -> None:
        super().__init__(parent)
        self.worker_thread = QThread(self)
        self.worker_thread.setObjectName("audiogen-generation")
        self.worker = GenerationWorker(playback=playback)
        self.worker.moveToThread(self.worker_thread)
        self._submit.connect(self.worker.generate)
        self.worker.chunk_ready.connect(self.chunk_ready)
        self.worker.progress.connect(self.progress)
        self.worker.playback_unavailable.connect(self.playback_unavailable)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.devices_found.connect(self._on_devices_found)
        self._probe.connect(self.worker.probe_devices)
        self._warm.connect(self.worker.warm_up)
        self._preload.connect(self.worker.preload)
        self._prepare.connect(self.worker.prepare)
        self.worker.prepared.connect(self.prepared)
        self.worker.warmed_up.connect(self._on_warmed_up)
        #: the start-up warm-up's report once it finished (``None`` before, or when off)
        self.warm_report: warmup.WarmUpReport | None = None
        # work asked for before the warm-up started waits for it (then runs in this order)
        self._warm_started = not warm_up
        self._held_probe = False
        self._held_preload: tuple[str, str, str] | None = None
        self.compute_devices: list[str] | None = None  # known after probe_devices()
        self._probing = False
        self._cancel: threading.Event | None = None
        self._prepare_cancel: threading.Event | None = None
        self.busy = False
        self._shut_down = False
        self._poll = QTimer(self)
        self._poll.setInterval(33)
        self._poll.timeout.connect(self._poll_playback)
        self.worker_thread.start()
        if warm_up:  # once the event loop runs and the window had time to appear
            QTimer.singleShot(WARM_UP_DELAY_MS, self, self._start_warm_up)

    def generate(self, request: GenerationRequest, model: str, device: str = "auto") -> bool:
        """Queue ``request`` on the worker; False when one is already running or shut down."""
        if self.busy or self._shut_down:
            return False
        self._start_warm_up()  # now, if it had not started: the request queues behind it
        self.busy = True
        self._cancel = threading.Event()
        self._submit.emit(request, model, device, self._cancel)
        self._poll.start()
        return True

    def preload(self, model: str, mode: str = "continue", device: str = "auto") -> bool:
        """Load the engine for ``model`` on the worker ahead of a request (queued behind what
        the worker is doing); False when shut down or generating."""
        if self._shut_down or self.busy:
            return False
        if not self._warm_started:
            self._held_preload = (model, mode, device)
        else:
            self._preload.emit(model, mode, device)
        return True

    def prepare(self, request: GenerationRequest, model: str, device: str = "auto") -> bool:
        """Prepare ``request``'s prompt on the worker ahead of Generate (see the module doc);
        ``prepared`` answers. An earlier prepare still queued or running is cancelled. False
        when shut down or generating."""
        if self._shut_down or self.busy:
            return False
        self._start_warm_up()  # now, if it had not started: the prepare queues behind it
        self.cancel_prepare()
        self._prepare_cancel = threading.Event()
        self._prepare.emit(request, model, device, self._prepare_cancel)
        return True

    def cancel_prepare(self) -> None:
        """Cancel the prepare queued or running, if any (it stops after its current step)."""
        if self._prepare_cancel is not None:
            self._prepare_cancel.set()
            self._prepare_cancel = None

    def probe_devices(self) -> None:
        """Ask the worker which compute devices exist; ``devices_found`` answers (once known,
        at once)."""
        if self.compute_devices is not None:
            self.devices_found.emit(list(self.compute_devices))
        elif not self._probing and not self._shut_down:
            self._probing = True
            if self._warm_started:
                self._probe.emit()
            else:
                self._held_probe = True

    def _start_warm_up(self) -> None:
        if self._warm_started or self._shut_down:
            return
        self._warm_started = True
        self._warm.emit()
        if self._held_probe:
            self._held_probe = False
            self._probe.emit()
        held, self._held_preload = self._held_preload, None
        if held is not None:
            self._preload.emit(*held)

    def _on_warmed_up(self, report: warmup.WarmUpReport) -> None:
        self.warm_report = report
        self.warmed_up.emit(report)

    def _on_devices_found(self, found: list[str]) -> None:
        self._probing = False
        self.compute_devices = list(found)
        self.devices_found.emit(list(found))

    def stop(self) -> None:
        """Cancel the running request (its partial takes still arrive) and stop playback."""
        if self._cancel is not None:
            self._cancel.set()
        self.worker.stop_playback()

    def shutdown(self) -> None:
        """Stop everything and end the thread; waits for it. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        self._poll.stop()
        self.worker.stop_warm_up.set()  # a warm-up in progress ends after its current piece
        self.cancel_prepare()
        self.stop()
        self.worker_thread.quit()
        self.worker_thread.wait()
        self.worker.stop_playback()

    def _on_finished(self, result: GenerationResult) -> None:
        self.busy = False
        self.finished.emit(result)

    def _on_failed(self, message: str) -> None:
        self.busy = False
        self.failed.emit(message)

    def _poll_playback(self) -> None:
        player = self.worker.player
        if player is None or player.finished.is_set():
            if player is not None:
                self.worker.stop_playback(only=player)
            self.playback_state.emit("")
            if not self.busy:
                self._poll.stop()
            return
        self.playback_state.emit("buffering" if player.buffering else "playing")
