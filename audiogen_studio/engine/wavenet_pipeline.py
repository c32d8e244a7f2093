"""WaveNet engine: continuation of a prompt and mel-conditioned vocoding, streamed in chunks.

Continuation (van den Oord et al. 2016, §2): the prompt is downmixed, resampled to the model's
rate and mu-law encoded; :class:`~audiogen_studio.engine.wavenet_fast.FastWaveNet` primes every
layer's queue from it in one parallel pass (Paine et al. 2016) and samples the continuation one
sample at a time, ``chunk_seconds`` of audio per yielded chunk. Vocoding (§2.5): the log-mel of
the input conditions the model; per-sample features are upsampled chunk by chunk (each sample
depends on its own mel frame only), so memory stays flat for long inputs.

Take ``i`` of a request with seed ``s`` draws its uniforms from ``numpy.random.default_rng([s,
i])``, so a take is reproduced exactly by its seed whether generated alone or batched.
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
from audiogen_studio.engine.api import AudioChunk, GenerationError, GenerationRequest
from audiogen_studio.engine.bundles import BundleError, BundleInfo
from audiogen_studio.engine.wavenet_fast import FastWaveNet
from audiogen_studio.models.checkpoint import CheckpointError, holds_float16_values
from audiogen_studio.models.device import resolve_device
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
    """

    def __init__(self, model: WaveNet, *, device: str = "auto", name: str = "wavenet") -> None:
        self.model = model.eval()
        self.config = model.config
        self.name = name
        self.sample_rate = int(self.config.sample_rate)
        # Sample-by-sample generation is latency-bound: the fused numba CPU step (~25-40k
        # samples/s on 2 cores, benchmarks/wavenet.py) beats a GPU step that launches ~200 small
        # kernels per sample for a few takes. So "auto" means the CPU here; name "cuda" or
        # "mps" to use the GPU step (CUDA graphs on CUDA).
        self.device = torch.device("cpu") if device == "auto" else resolve_device(device)
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
        return cls(model, device=device, name=f"{bundle.name} {bundle.version}")

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
        if request.candidates is not None and request.candidates > 1:
            raise GenerationError(
                f"{self.name} generates each take sample by sample and cannot choose among "
                "candidate beginnings (an AudioLM model can); rank whole takes instead "
                "(continue --best-of)"
            )
        # a continuation reads the prompt's last receptive field (FastWaveNet.prime)
        heard = self.fast.receptive_field / self.sample_rate + HEARD_MARGIN_SECONDS
        audio = self._mono(request.prompt, tail=heard if request.mode == "continue" else None)
        self._check(request, audio)
        seed = request.resolved_seed()
        takes = request.takes
        rngs = [np.random.default_rng([seed, i]) for i in range(takes)]
        chunk = max(1, round(request.chunk_seconds * self.sample_rate))
        total = self.expected_frames(request)
        bits = self.config.bits
        if request.mode == "continue":
            prompt = np.repeat(mulaw_encode(audio, bits)[None, :], takes, axis=0)
            prompt_cond = None
            cond_fn: Callable[[int, int], Any] | None = None
        else:
            prompt, prompt_cond, cond_fn, total = self._vocoder_inputs(audio, takes)
        started = time.perf_counter()
        done = 0
        fast = self.fast_single if takes == 1 and self.fast_single is not None else self.fast
        for classes in fast.stream(
            prompt,
            total,
            chunk,
            temperature=request.temperature,
            rng=rngs,
            cancel=cancel,
            cond_fn=cond_fn,
            prompt_cond=prompt_cond,
            top_k=request.top_k,
            top_p=request.top_p,
        ):
            samples = mulaw_decode(classes, bits)  # [B, n] float32
            n = samples.shape[1]
            elapsed = time.perf_counter() - started
            rtf = elapsed / ((done + n) / self.sample_rate)
            for b in range(takes):
                yield AudioChunk(
                    take=b,
                    start=done,
                    samples=samples[b : b + 1],
                    rate=self.sample_rate,
                    progress=(done + n) / max(total, 1),
                    seed=seed,
                    info={"rtf": rtf},
                )
            done += n

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
