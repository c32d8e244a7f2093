"""WaveNet engine: continuation of a prompt and mel-conditioned vocoding, streamed in chunks.

Continuation (van den Oord et al. 2016, §2): the prompt is downmixed, resampled to the model's
rate and mu-law encoded; :class:`~audiogen_studio.engine.wavenet_fast.FastWaveNet` primes every
layer's queue from it in one parallel pass (Paine et al. 2016) and samples the continuation one
sample at a time, ``chunk_seconds`` of audio per yielded chunk. Vocoding (§2.5): the log-mel of
the input conditions the model; per-sample features are upsampled chunk by chunk (each sample
depends on its own mel frame only), so memory stays flat for long inputs.

Take ``i`` of a request with seed ``s`` draws its uniforms from ``numpy.random.default_rng([s,
i])``, so a take is reproduced exactly by its seed whether generated alone or batched.

Candidate beginnings (``GenerationRequest.candidates``, continuation only): the first
``choose_after`` seconds of every take are generated as N rows (candidate ``c > 0`` of take ``i``
draws from ``default_rng([s, i, c])``); each take keeps the row whose audio matches the prompt
best (:mod:`~audiogen_studio.engine.take_ranking`), and the stream goes on from that row: the
model is primed again on the prompt and the kept samples (the cached queues equal the full
computation) and samples on with the row's own generator, so the take goes on as it would have.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from audiogen_studio.audio import edit, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import Aspect, AudioChunk, GenerationError, GenerationRequest
from audiogen_studio.engine.bundles import BundleError, BundleInfo
from audiogen_studio.engine.take_ranking import ChoiceSettings, RankingError, match_score
from audiogen_studio.engine.wavenet_fast import FastWaveNet
from audiogen_studio.models.checkpoint import CheckpointError, holds_float16_values
from audiogen_studio.models.device import generation_device
from audiogen_studio.models.mulaw import mulaw_decode, mulaw_encode, silence_class
from audiogen_studio.models.wavenet import WaveNet, log_mel

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # a prompt whose peak is below this is refused as silent
#: audio a continuation reads before the receptive field (the resampler's transient): a long
#: prompt's earlier audio is not converted at all
HEARD_MARGIN_SECONDS = 1.0


class WaveNetEngine:
    """Serves ``continue`` (unconditional bundles) and ``vocode`` (mel-conditioned bundles).

    Args:
        model: a :class:`WaveNet` (its weights are copied into the fast path).
        device: ``"auto"`` (the numba CPU step, see below), ``"cpu"``, ``"cuda"`` or ``"mps"``.
        name: shown in take provenance.
        choice: how a continuation's takes are chosen among candidate beginnings (default:
            they are not; :class:`~audiogen_studio.engine.take_ranking.ChoiceSettings`).
    """

    def __init__(
        self,
        model: WaveNet,
        *,
        device: str = "auto",
        name: str = "wavenet",
        choice: ChoiceSettings | None = None,
    ) -> None:
        self.model = model.eval()
        self.choice = choice or ChoiceSettings()
        self.config = model.config
        self.name = name
        self.sample_rate = int(self.config.sample_rate)
        # Sample-by-sample generation is latency-bound: the fused numba CPU step (~25-40k
        # samples/s on 2 cores, benchmarks/wavenet.py) beats a GPU step that launches ~200 small
        # kernels per sample (CUDA graphs on CUDA) for a few takes, so "auto" means the CPU.
        self.device = generation_device(device)
        self.fast = FastWaveNet.from_model(model, device=self.device)
        #: the step for one take with the weights streamed as float16 (math in float32), when
        #: that is lossless: a bundle shipped as float16 holds float16 values. One take is
        #: bound by streaming the weights and runs ~1.25x faster so; batched takes are bound by
        #: compute and run faster with float32 (``wavenet-music``: 20.9 against 26.4 us per
        #: sample for one take, 55.0 against 45.4 us per step for four).
        self.fast_single: FastWaveNet | None = None
        if self.device.type == "cpu" and holds_float16_values(model.state_dict().values()):
            self.fast_single = FastWaveNet.from_model(
                model, device=self.device, weight_dtype=np.float16
            )
        self.model.to(self.device)

    @classmethod
    def from_bundle(cls, bundle: BundleInfo, *, device: str = "auto") -> WaveNetEngine:
        """Load the ``wavenet`` component of a bundle (safetensors only)."""
        path = bundle.component_path("wavenet")
        expected = bundle.components["wavenet"].get("config")
        try:
            model = WaveNet.from_pretrained(path, expected_config=expected or None)
        except CheckpointError as exc:
            raise BundleError(f"bundle '{bundle.name}': {exc}") from exc
        if model.config.sample_rate != bundle.sample_rate:
            raise BundleError(
                f"bundle '{bundle.name}': model rate {model.config.sample_rate} Hz differs from "
                f"the bundle's {bundle.sample_rate} Hz"
            )
        try:
            choice = ChoiceSettings.from_generation(bundle.generation)
        except RankingError as exc:
            raise BundleError(f"bundle '{bundle.name}': generation: {exc}") from exc
        return cls(model, device=device, name=f"{bundle.name} {bundle.version}", choice=choice)

    # -- request helpers -----------------------------------------------------------------

    def _mono(self, clip: Clip, *, tail: float | None = None) -> np.ndarray:
        """The prompt as the model hears it: mono float32 ``[T]`` at the model's rate; with
        ``tail``, only the prompt's last ``tail`` seconds (all of a shorter one)."""
        if tail is not None and clip.duration > tail:
            clip = edit.crop(clip, clip.frames - math.ceil(tail * clip.rate))
        mono = io.resample(io.downmix(clip), self.sample_rate)
        return np.array(mono.samples[0], dtype=np.float32)  # a writable copy for torch

    def expected_frames(self, request: GenerationRequest) -> int:
        """Frames each take will have when generation completes (at the model's rate)."""
        if request.mode == "continue":
            return round(request.seconds * self.sample_rate)
        hop = self.config.hop_length
        frames = -(-round(request.prompt.duration * self.sample_rate) // hop)
        return frames * hop

    def _check(self, request: GenerationRequest, audio: np.ndarray) -> None:
        vocoder = self.config.mel_channels > 0
        if request.mode == "continue" and vocoder:
            raise GenerationError(f"{self.name} is a mel vocoder: use it to vocode, not continue")
        if request.mode == "vocode" and not vocoder:
            raise GenerationError(f"{self.name} is not a mel vocoder (it has no mel conditioning)")
        if audio.size == 0:
            raise GenerationError("the prompt is empty")
        if float(np.max(np.abs(audio))) < SILENCE_PEAK:
            raise GenerationError(
                "the prompt is silent (peak below -80 dBFS): there is nothing to continue"
            )

    # -- generation --------------------------------------------------------------------------

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[AudioChunk]:
        """Yield ``[1, n]`` float32 chunks of every take at the model's rate (see module doc)."""
        if request.mode == "vocode" and (request.candidates or 1) > 1:
            raise GenerationError("vocoding renders the input once per take: no candidates")
        n_cand = self.choice.candidates_for(request, self.name) if request.mode == "continue" else 1
        # a continuation reads the prompt's last receptive field (FastWaveNet.prime)
        heard = self.fast.receptive_field / self.sample_rate + HEARD_MARGIN_SECONDS
        audio = self._mono(request.prompt, tail=heard if request.mode == "continue" else None)
        self._check(request, audio)
        seed = request.resolved_seed()
        takes = request.takes
        rngs = [
            np.random.default_rng([seed, b] if c == 0 else [seed, b, c])
            for b in range(takes)
            for c in range(n_cand)
        ]
        chunk = max(1, round(request.chunk_seconds * self.sample_rate))
        total = self.expected_frames(request)
        bits = self.config.bits
        if request.mode == "continue":
            prompt = np.repeat(mulaw_encode(audio, bits)[None, :], takes * n_cand, axis=0)
            prompt_cond = None
            cond_fn: Callable[[int, int], Any] | None = None
        else:
            prompt, prompt_cond, cond_fn, total = self._vocoder_inputs(audio, takes)
        started = time.perf_counter()
        done = 0

        def run(
            prompt: np.ndarray, n_total: int, rngs: list[np.random.Generator]
        ) -> Iterator[np.ndarray]:
            """``fast.stream`` of ``n_total`` samples after ``prompt [R, T]``, one row per
            generator."""
            rows = prompt.shape[0]
            fast = self.fast_single if rows == 1 and self.fast_single is not None else self.fast
            return fast.stream(
                prompt,
                n_total,
                chunk,
                temperature=request.temperature,
                rng=rngs,
                cancel=cancel,
                cond_fn=cond_fn,
                prompt_cond=prompt_cond,
                top_k=request.top_k,
                top_p=request.top_p,
            )

        def chunks(classes: np.ndarray, start: int) -> Iterator[AudioChunk]:
            samples = mulaw_decode(classes, bits)  # [takes, n] float32
            n = samples.shape[1]
            rtf = (time.perf_counter() - started) / ((start + n) / self.sample_rate)
            for b in range(takes):
                yield AudioChunk(
                    take=b,
                    start=start,
                    samples=samples[b : b + 1],
                    rate=self.sample_rate,
                    progress=(start + n) / max(total, 1),
                    seed=seed,
                    info={"rtf": rtf},
                )

        if n_cand > 1:
            # candidate beginnings: every take's N rows until the choice, held back
            first = min(total, round(self.choice.choose_after * self.sample_rate))
            held = list(run(prompt, first, rngs))
            if not held:
                return  # stopped before any sample
            began = np.concatenate(held, axis=1)  # [takes·N, n]
            aspect = self.choice.aspect_for(request) or "voice"
            kept = self._choose(audio, mulaw_decode(began, bits), takes, n_cand, aspect)
            rngs = [rngs[k] for k in kept]
            for classes in held:
                yield from chunks(classes[kept], done)
                done += classes.shape[1]
            if done < first or (cancel is not None and cancel.is_set()):
                return  # stopped while choosing: the kept beginnings are the partial takes
            # the kept rows go on: primed again on the prompt and their own samples
            prompt = np.concatenate([prompt[kept], began[kept]], axis=1)
        for classes in run(prompt, total - done, rngs):
            yield from chunks(classes, done)
            done += classes.shape[1]

    def _choose(
        self, prompt: np.ndarray, heard: np.ndarray, takes: int, n_cand: int, aspect: Aspect
    ) -> list[int]:
        """Each take's best candidate row of ``heard [takes·N, n]`` against ``prompt [T]`` in
        ``aspect`` (candidate 0 when its audio is too short to rank)."""
        kept = []
        for b in range(takes):
            try:
                scores = [
                    match_score(prompt, heard[b * n_cand + c], self.sample_rate, aspect)
                    for c in range(n_cand)
                ]
                kept.append(b * n_cand + int(np.argmax(scores)))
            except RankingError:
                kept.append(b * n_cand)
        return kept

    def _vocoder_inputs(
        self, audio: np.ndarray, takes: int
    ) -> tuple[np.ndarray, torch.Tensor, Callable[[int, int], Any], int]:
        """Start from a virtual silent sample -1; step ``j`` feeds the previous sample with the
        features of position ``j`` (mel frame ``j // hop``) and makes sample ``j`` (as trained)."""
        hop = self.config.hop_length
        with torch.no_grad():
            mel = log_mel(torch.from_numpy(audio), self.config).to(self.device)  # [1, M, F]
        frames = mel.shape[-1]
        total = frames * hop
        mel = mel.expand(takes, -1, -1)

        def features(start: int, length: int) -> torch.Tensor:
            first, last = start // hop, -(-(start + length) // hop)
            with torch.no_grad():
                up = self.model.upsample_conditioning(mel[:, :, first:last])
            offset = start - first * hop
            return up[:, :, offset : offset + length].cpu()

        prompt = np.full((takes, 1), silence_class(self.config.bits), dtype=np.int64)
        return prompt, features(0, 1), features, total
