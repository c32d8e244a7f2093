"""AudioLM continuation (Borsos et al. 2022 §4.3), streamed window by window.

The prompt's semantic tokens (the bundle's tokenizer) and acoustic tokens (its codec) of its
whole frames up to :data:`MIN_CROSSFADE_SECONDS` before its end prime three token streams, one
per LM, each with its own KV cache (layouts in :mod:`~audiogen_studio.models.audiolm_layout`).
Then, window after window (a short first window so that audio starts early, then
``window_seconds``):

1. the **semantic** LM extends the semantic sequence by the window;
2. for each new semantic token the **coarse** LM is fed that token and samples its frames'
   first ``Q_c`` quantizers, each step restricted to its quantizer's ids;
3. for each new codec frame the **fine** LM is fed its coarse codes and samples the other
   ``Q_f`` quantizers;
4. the codec's **streaming decoder** (primed with the prompt's codes) turns the window's frames
   into audio, which is yielded at once.

Before step 1, when the request or the bundle asks for it, the LMs named by the adaptation
settings (the coarse one by default) are replaced, for this request, by copies fine-tuned for a
few steps on the prompt's own tokens (:mod:`~audiogen_studio.engine.prompt_adaptation`).
Two bundle settings steer the sampling: ``generation.semantic_cache`` mixes the prompt's
semantic-token frequencies into step 1 (:class:`_CacheMixedStream`), and
``generation.coarse_guidance`` samples step 2 with classifier-free guidance
(:class:`_GuidedStream`). ``generation.level_match`` (or the request's ``level_match``) keeps
the decoded audio at the prompt's level (:mod:`~audiogen_studio.engine.level_match`), and
``generation.beat_guidance`` (or the request's ``beat_guidance``) tilts step 1 towards attacks on
the prompt's beat (:mod:`~audiogen_studio.engine.beat_guidance`).

A request may ask for several *candidate beginnings* per take (``GenerationRequest.candidates``,
or the bundle's ``generation.candidates``): the streams then run one row per candidate until
``choose_after`` seconds are decoded, each take keeps the candidate whose audio matches the
prompt best (:mod:`~audiogen_studio.engine.take_ranking`, by the bundle's ``rank_by``), and
every stream, generator and the decoder go on with the kept rows alone; the audio held until
then is yielded at once. This is best-of-N sampling with an early choice, so the extra rows cost
only the first seconds.

So audio is out after one short window, not after the whole semantic sequence. When a stream's
cache is full its context slides: the cache is reset and re-filled with the last half of its
capacity (whole groups, so positions keep the structure the LM was trained on), which serves
requests longer than any LM's context. The stream starts exactly where the prompt ends; the first
chunk also carries ``lead_in``: the decoder's rendering of the prompt's last few milliseconds,
which the take collector crossfades with the untouched prompt. Takes are batched (batch = takes);
take ``i`` samples with its own ``torch.Generator`` seeded from ``(seed, i)``, so it is the same
alone or batched.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import torch

from audiogen_studio.audio import edit, io
from audiogen_studio.engine.api import (
    CONTEXT_SLIDES,
    AudioChunk,
    ContextSlide,
    GenerationError,
    GenerationRequest,
    check_stage_temperatures,
)
from audiogen_studio.engine.beat_guidance import (
    GRID_SECONDS,
    BeatGrid,
    BeatGuidanceSettings,
    BeatGuide,
    estimate_beat_grid,
    token_onsets,
)
from audiogen_studio.engine.bundles import BundleError, BundleInfo
from audiogen_studio.engine.level_match import LevelFollower, LevelMatchSettings
from audiogen_studio.engine.prompt_adaptation import (
    AdaptationCache,
    AdaptationCancelledError,
    AdaptationSettings,
    adapt_copy,
    last_windows,
)
from audiogen_studio.engine.take_ranking import (
    Aspect,
    ChoiceSettings,
    RankingError,
    match_score,
)
from audiogen_studio.models.acoustic_codec import (
    AcousticCodec,
    decoder_latency,
    load_acoustic_codec,
)
from audiogen_studio.models.audiolm_layout import TokenLayout
from audiogen_studio.models.checkpoint import (
    CheckpointError,
    holds_float16_values,
    load_into,
    round_to_float16_,
)
from audiogen_studio.models.device import generation_device
from audiogen_studio.models.lm import LMConfig, TokenLM
from audiogen_studio.models.sampling import sample_next
from audiogen_studio.models.semantic import SemanticTokenizer

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # -80 dBFS
MIN_CROSSFADE_SECONDS = 0.01
FIRST_WINDOW_SECONDS = 0.16
PRIME_FRAMES = 48  # codec frames that prime the streaming decoder (receptive field <= 24;
# the default mel codec's, with its overlap-add, 46: tests/models/test_mel_codec.py)
ENCODE_MARGIN_FRAMES = 48  # codec frames encoded before the first one used (receptive field)
#: audio before the first semantic frame a request uses that the tokenizer still hears (its
#: encoder attends over the whole input; it was trained on 2 s crops): a long prompt is
#: tokenized from there on, so a minutes-long prompt costs what a ~10 s one does
TOKENIZER_CONTEXT_SECONDS = 8.0
STAGE_COMPONENTS = ("lm_semantic", "lm_coarse", "lm_fine")


class _CancelledError(Exception):
    pass


def _take_seed(seed: int, take: int, candidate: int = 0) -> int:
    """The torch seed of take ``take`` of a request with ``seed`` (its candidate beginning
    ``candidate``; candidate 0 is the take a request without candidates generates)."""
    key = [seed, take] if candidate == 0 else [seed, take, candidate]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass
class _Stage:
    """One token LM with its training window (semantic tokens), the group size of its
    sequence (ids per semantic token or codec frame) and its name (``semantic``, ``coarse``,
    ``fine``: which temperature factor it samples with)."""

    model: TokenLM
    window: int
    group: int
    name: str


@dataclass(frozen=True, slots=True)
class _PromptTokens:
    """What a request starts from (one take; :meth:`AudioLMEngine._prompt_tokens`).

    Attributes:
        semantic: ``[1, S]`` semantic tokens of the prompt's last ``S <= S_p`` whole frames
            (as many as the streams and the adaptation use).
        frames: ``S_p``: the prompt's whole semantic frames.
        codes: ``[1, Q, S_p·ratio - base]`` codec codes of its last frames.
        base: the codec frame ``codes[..., 0]`` is.
        keep: the prompt's last ids each stream starts with, in groups (semantic tokens for
            ``semantic`` and ``coarse``, codec frames for ``fine``).
        adapt_frames: semantic frames at the prompt's end the adaptation learns from (0: none).
    """

    semantic: torch.Tensor
    frames: int
    codes: torch.Tensor
    base: int
    keep: dict[str, int]
    adapt_frames: int

    def last_semantic(self, n: int) -> torch.Tensor:
        """``[1, n]``: the semantic tokens of the prompt's last ``n`` whole frames."""
        return self.semantic[:, self.semantic.shape[1] - n :]


class _Stream:
    """A stage's growing token sequence ``[B, L]`` and its KV cache.

    ``tokens`` holds every id since the prompt's first frame; the cache holds positions
    ``start .. start + fed`` of it. Feeding and sampling go through :meth:`push` and
    :meth:`next_logits`; a full cache slides to the last half of its capacity, on a group
    boundary: by re-running the kept ids (``slide = "refill"``: exactly the LM on that window)
    or by dropping the older half of the cache (``"evict"``: :meth:`TokenLM.evict`, no forward
    pass; the kept keys still carry what they attended to).
    """

    def __init__(self, stage: _Stage, tokens: torch.Tensor, slide: ContextSlide = "refill") -> None:
        self.stage = stage.name
        self.model = stage.model
        self.group = stage.group
        self.tokens = tokens
        self.capacity = stage.model.config.max_seq_len
        self.cache = stage.model.new_cache(tokens.shape[0], self.capacity)
        self.start = 0
        self.fed = 0
        self.evict = slide == "evict"

    def push(self, forced: torch.Tensor) -> None:
        """Append ids ``[B, n]`` that are given, not sampled (conditioning)."""
        self.tokens = torch.cat([self.tokens, forced.to(self.tokens.device)], dim=1)

    def keep(self, rows: torch.Tensor) -> None:
        """Go on with the batch rows ``rows [B']`` alone (sequence and cache, exactly)."""
        self.tokens = self.tokens[rows.to(self.tokens.device)]
        self.cache = self.cache.take(rows)

    def next_logits(self, span: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits ``[B, V]`` of the next id, after feeding everything not yet in the cache;
        with ``span = (lo, hi)``, the id range it is sampled from, only those (the rest
        ``-inf``: the LM projects onto those rows of its output matrix alone)."""
        total = self.tokens.shape[1]
        if total - self.start > self.capacity:
            keep = self.capacity // 2
            start = max(0, (total - keep) // self.group * self.group)
            drop = start - self.start
            if self.evict and drop <= self.fed:  # the kept ids are all in the cache
                self.model.evict(self.cache, drop)
                self.fed -= drop
            else:
                self.cache.reset()
                self.fed = 0
            self.start = start
        pending = self.tokens[:, self.start + self.fed :]
        self.fed += pending.shape[1]
        # a few given ids and the last sampled one go through the fused CPU step together (one
        # pass over the weights); a longer run (a prefill) through torch
        return self.model.forward_cached(pending, self.cache, last_only=True, rows=span)[:, -1]

    def greedy(
        self, count: int, spans: Callable[[int], tuple[int, int] | None]
    ) -> torch.Tensor | None:
        """``count`` greedy ids ``[B, count]`` (id ``i`` the argmax within ``spans(i)``), all
        appended, in one fused CPU call (``FusedDecoder.greedy``, ``engine/lm_fast.py``): the
        same ids as :meth:`next_logits` and a greedy draw per id. ``None`` when it cannot run
        here (no fused step, the cache would slide on the way, a torch prefill is pending)."""
        greedy = getattr(self.model.fused_decode, "greedy", None)  # engine/lm_fast.py's
        total = self.tokens.shape[1]
        pending = self.tokens[:, self.start + self.fed :]
        if greedy is None or total + count - 1 - self.start > self.capacity or not pending.numel():
            return None
        vocab = self.model.config.vocab_size
        ranges = [spans(i) or (0, vocab) for i in range(count)]
        ids: torch.Tensor | None = greedy(pending, self.cache, ranges)
        if ids is None:
            return None
        self.fed += pending.shape[1] + count - 1
        self.tokens = torch.cat([self.tokens, ids.to(self.tokens.device)], dim=1)
        return ids


class _GuidedStream:
    """The coarse stage under classifier-free guidance (Ho & Salimans 2022; MusicGen §2.4).

    One :class:`_Stream` of ``2B`` rows: rows ``0..B-1`` are the ids as given, rows ``B..2B-1``
    the same with every semantic id (position ``≡ 0`` modulo the group; the sequence starts on
    a group boundary) replaced by ``null_id``, the "no conditioning" a coarse LM trained with
    semantic dropout knows. The next id's logits are ``u + scale·(c - u)`` (``scale`` 1: the
    conditional LM alone), so the sampled codes follow the semantic tokens more closely than
    the acoustic history. Both halves share one batched KV cache and slide together.
    """

    def __init__(
        self,
        stage: _Stage,
        tokens: torch.Tensor,
        *,
        scale: float,
        null_id: int,
        slide: ContextSlide = "refill",
    ) -> None:
        self.stage = stage.name
        self.group = stage.group
        self.scale = float(scale)
        self.null_id = int(null_id)
        self.rows = tokens.shape[0]
        self.inner = _Stream(stage, torch.cat([tokens, self._null(tokens, 0)]), slide)

    @property
    def tokens(self) -> torch.Tensor:
        """The conditional sequence ``[B, L]``."""
        return self.inner.tokens[: self.rows]

    def _null(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        """``ids [B, n]`` (starting at sequence position ``offset``) without semantic ids."""
        if ids.shape[1] == 1:  # one id per push while sampling: a code, or a semantic token
            return ids if offset % self.group else torch.full_like(ids, self.null_id)
        semantic = (torch.arange(offset, offset + ids.shape[1]) % self.group) == 0
        out = ids.clone()
        out[:, semantic.to(out.device)] = self.null_id
        return out

    def push(self, forced: torch.Tensor) -> None:
        """Append ids ``[B, n]`` to both halves (semantic ones nulled in the second)."""
        forced = forced.to(self.inner.tokens.device)
        offset = self.inner.tokens.shape[1]
        self.inner.push(torch.cat([forced, self._null(forced, offset)]))

    def keep(self, rows: torch.Tensor) -> None:
        """Go on with the rows ``rows [B']`` alone (both halves)."""
        self.inner.keep(torch.cat([rows, rows + self.rows]))
        self.rows = int(rows.shape[0])

    def next_logits(self, span: tuple[int, int] | None = None) -> torch.Tensor:
        """Guided logits ``[B, V]`` of the next id (with ``span``: of those ids, the rest
        ``-inf``)."""
        logits = self.inner.next_logits(span).float()
        cond, uncond = logits[: self.rows], logits[self.rows :]
        if span is None:
            return uncond + self.scale * (cond - uncond)
        lo, hi = span
        # in place: ``uncond`` is this call's own tensor, and -inf outside the span already
        u = uncond[:, lo:hi]
        u.add_((cond[:, lo:hi] - u).mul_(self.scale))
        return uncond


class _CacheMixedStream(_Stream):
    """The semantic stage mixed with a unigram cache of the prompt's tokens (the cache language
    model of Kuhn & De Mori 1990): the next id is drawn from ``(1 - mix)·p + mix·q``, ``p`` the
    LM's distribution and ``q`` the add-½ frequencies of the ids the stream starts with (the
    prompt's last semantic tokens). It costs nothing and keeps the continuation among the
    prompt's tokens, e.g. its pitch classes with a chroma tokenizer. The stage's temperature
    then applies to the mixture's log-probabilities.
    """

    def __init__(
        self, stage: _Stage, tokens: torch.Tensor, *, mix: float, slide: ContextSlide = "refill"
    ) -> None:
        super().__init__(stage, tokens, slide)
        self.mix = float(mix)
        vocab = stage.model.config.vocab_size
        counts = torch.stack(
            [torch.bincount(row.long().cpu(), minlength=vocab)[:vocab] for row in tokens]
        ).float()
        counts += 0.5
        self.frequencies = (counts / counts.sum(dim=1, keepdim=True)).to(tokens.device)  # [B, V]

    def next_logits(self, span: tuple[int, int] | None = None) -> torch.Tensor:
        """Log-probabilities ``[B, V]`` of the mixture (over the whole vocabulary: the mixture
        needs every id's probability, so ``span`` only restricts what is drawn later)."""
        p = torch.softmax(super().next_logits().float(), dim=-1)
        return torch.log((1.0 - self.mix) * p + self.mix * self.frequencies)

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        self.frequencies = self.frequencies[rows.to(self.frequencies.device)]


class AudioLMEngine:
    """Continues a prompt with a codec, a semantic tokenizer and three token LMs.

    Args:
        codec, tokenizer, lm_semantic, lm_coarse, lm_fine: the bundle's models (``lm_fine`` is
            ``None`` when the layout has no fine quantizers); the codec is either acoustic
            codec (``models/acoustic_codec.py``).
        layout: the token layout the LMs were trained with.
        windows: context of each LM in semantic tokens (``semantic``, ``coarse``, ``fine``).
        window_seconds: audio per window after the first.
        device: ``"auto"`` (the CPU, whose fused LM step outruns a GPU's per-token launches:
            :func:`~audiogen_studio.models.device.generation_device`), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        stage_temperatures: the bundle's tuned per-stage temperature factors (stages not named:
            1); a request's ``stage_temperatures`` replace them.
        decode_quantizers: how many of the codec's quantizers the generated audio is decoded
            from (``None``: all the layout has). At most ``Q_c`` skips the fine LM: its codes
            are not sampled, and the decoder renders the coarse ones alone (residual VQ decodes
            any prefix of its codebooks). For a fine LM whose codes cost more than they add.
        adaptation: how the LMs adapt to each prompt (default: not at all; a request's
            ``adapt_steps`` overrides the steps).
        coarse_guidance: classifier-free guidance scale of the coarse stage (1: none; a coarse
            LM trained with ``--semantic-dropout`` is needed for other values, see
            :class:`_GuidedStream`).
        semantic_cache: weight in ``[0, 1)`` of the prompt's semantic-token frequencies mixed
            into the semantic LM's distribution (0: none; :class:`_CacheMixedStream`).
        choice: how each take is chosen among candidate beginnings (default: it is not;
            :class:`~audiogen_studio.engine.take_ranking.ChoiceSettings`).
        level_match: how the continuation is kept at the prompt's level (default: it is not;
            a request's ``level_match`` turns it on or off;
            :mod:`~audiogen_studio.engine.level_match`).
        slide: how a stream whose cache is full slides its context to the last half of it:
            ``"refill"`` re-runs the kept ids (the LM on exactly that window, one forward pass
            over half the context per slide), ``"evict"`` drops the older half of the cache
            and keeps the rest (:meth:`~audiogen_studio.models.lm.TokenLM.evict`: no forward
            pass, so ~15 % less time on a CPU; the kept keys still carry their longer context).
            ``generation.context_slide`` in ``bundle.json``; ``"refill"`` when absent.
        beat_guidance: how the semantic stage is steered onto the prompt's beat (default: it
            is not; a request's ``beat_guidance`` turns it on or off; needs a tokenizer whose
            features carry onsets: :mod:`~audiogen_studio.engine.beat_guidance`).
    """

    def __init__(
        self,
        *,
        codec: AcousticCodec,
        tokenizer: SemanticTokenizer,
        lm_semantic: TokenLM,
        lm_coarse: TokenLM,
        lm_fine: TokenLM | None,
        layout: TokenLayout,
        windows: dict[str, int],
        device: str = "auto",
        name: str = "audiolm",
        window_seconds: float = 1.0,
        stage_temperatures: Mapping[str, float] | None = None,
        decode_quantizers: int | None = None,
        adaptation: AdaptationSettings | None = None,
        coarse_guidance: float = 1.0,
        semantic_cache: float = 0.0,
        choice: ChoiceSettings | None = None,
        level_match: LevelMatchSettings | None = None,
        slide: ContextSlide = "refill",
        beat_guidance: BeatGuidanceSettings | None = None,
    ) -> None:
        if not (math.isfinite(coarse_guidance) and coarse_guidance >= 0):
            raise BundleError(f"{name}: coarse_guidance must be >= 0, got {coarse_guidance}")
        if not 0.0 <= semantic_cache < 1.0:
            raise BundleError(f"{name}: semantic_cache must be in [0, 1), got {semantic_cache}")
        self.choice = choice or ChoiceSettings()
        self.level_match = level_match or LevelMatchSettings()
        if slide not in CONTEXT_SLIDES:
            raise BundleError(
                f"{name}: context_slide must be one of {', '.join(CONTEXT_SLIDES)}, got {slide!r}"
            )
        self.slide: ContextSlide = slide
        self.coarse_guidance = float(coarse_guidance)
        self.semantic_cache = float(semantic_cache)
        self.device = generation_device(device)  # "auto": the CPU's fused LM step
        self.adaptation = adaptation or AdaptationSettings()
        self._adapted = AdaptationCache()
        self.stage_temperatures = check_stage_temperatures(stage_temperatures or {})
        self.codec = codec.eval().to(self.device)
        # decoded audio lags the codes by this many samples (the mel codec's overlap-add):
        # the stream skips them and generates that much more
        self.latency = decoder_latency(self.codec)
        self.tokenizer = tokenizer.eval().to(self.device)
        self.beat_guidance = beat_guidance or BeatGuidanceSettings()
        self._token_onsets = token_onsets(self.tokenizer)
        self._grids: OrderedDict[str, BeatGrid | None] = OrderedDict()  # per prompt, recent
        if self.beat_guidance.enabled and self._token_onsets is None:
            raise BundleError(
                f"{name}: beat_guidance needs semantic tokens that carry onsets (a chroma "
                "tokenizer, as music bundles have)"
            )
        self.layout = layout
        self.name = name
        self.sample_rate = int(codec.config.sample_rate)
        self.hop_s = int(tokenizer.hop)
        self.hop_c = int(codec.config.hop)
        if self.hop_s != self.hop_c * layout.ratio:
            raise BundleError(
                f"{name}: semantic hop {self.hop_s} is not {layout.ratio} codec hops of "
                f"{self.hop_c} samples"
            )
        kq = layout.quantizers if decode_quantizers is None else int(decode_quantizers)
        if not 1 <= kq <= layout.quantizers:
            raise BundleError(
                f"{name}: decode_quantizers must be within 1..{layout.quantizers}, got {kq}"
            )
        self.decode_quantizers = kq
        if layout.fine_quantizers and kq > layout.coarse_quantizers and lm_fine is None:
            raise BundleError(f"{name}: the layout has fine quantizers but no fine LM")
        self.stages = {
            "semantic": _Stage(
                lm_semantic.eval().to(self.device), windows["semantic"], 1, "semantic"
            ),
            "coarse": _Stage(
                lm_coarse.eval().to(self.device), windows["coarse"], layout.coarse_group, "coarse"
            ),
        }
        if lm_fine is not None and layout.fine_quantizers:
            self.stages["fine"] = _Stage(
                lm_fine.eval().to(self.device), windows["fine"], layout.fine_group, "fine"
            )
        for stage in self.stages.values():
            self._accelerate(stage.model)
        self.window_tokens = max(1, round(window_seconds * layout.semantic_rate))

    def _accelerate(self, model: TokenLM) -> None:
        if self.device.type == "cpu":  # fused numba decode step for one-token calls
            from audiogen_studio.engine.lm_fast import accelerate

            accelerate(model)

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_bundle(cls, bundle: BundleInfo, *, device: str = "auto") -> AudioLMEngine:
        """Load every component of an ``audiolm`` bundle (safetensors only)."""
        bundle.require_kind("audiolm")
        try:
            bundle.component_path("codec")  # a clear error when it is missing
            codec = load_acoustic_codec(bundle.path)
            tokenizer = SemanticTokenizer.from_pretrained(bundle.component_path("semantic"))
            lms: dict[str, TokenLM] = {}
            windows: dict[str, int] = {}
            layout: TokenLayout | None = None
            for component in STAGE_COMPONENTS:
                if component not in bundle.components:
                    continue
                entry = bundle.components[component]
                cfg = entry.get("config", {})
                lm_cfg = LMConfig.from_dict(cfg["lm"])
                lms[component] = TokenLM(lm_cfg)
                load_into(lms[component], bundle.component_path(component))
                windows[component.removeprefix("lm_")] = int(cfg["window"])
                this = TokenLayout.from_dict(cfg["layout"])
                if layout is not None and this != layout:
                    raise BundleError(f"bundle '{bundle.name}': its LMs disagree on the layout")
                layout = this
        except (CheckpointError, KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle '{bundle.name}': {exc}") from exc
        try:
            stage_temperatures = check_stage_temperatures(
                bundle.generation.get("stage_temperatures", {})
            )
        except GenerationError as exc:
            raise BundleError(f"bundle '{bundle.name}': generation defaults: {exc}") from exc
        try:
            adaptation = AdaptationSettings.from_dict(bundle.generation.get("adaptation", {}))
        except GenerationError as exc:
            raise BundleError(f"bundle '{bundle.name}': generation.adaptation: {exc}") from exc
        guidance = bundle.generation.get("coarse_guidance", 1.0)
        cache = bundle.generation.get("semantic_cache", 0.0)
        try:
            choice = ChoiceSettings.from_generation(bundle.generation)
        except RankingError as exc:
            raise BundleError(f"bundle '{bundle.name}': generation: {exc}") from exc
        try:
            level_match = LevelMatchSettings.from_generation(bundle.generation)
            beat_guidance = BeatGuidanceSettings.from_generation(bundle.generation)
        except GenerationError as exc:
            raise BundleError(f"bundle '{bundle.name}': generation.{exc}") from exc
        for key, value in (("coarse_guidance", guidance), ("semantic_cache", cache)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BundleError(
                    f"bundle '{bundle.name}': generation.{key} must be a number, got {value!r}"
                )
        slide = bundle.generation.get("context_slide", "refill")
        if slide not in CONTEXT_SLIDES:
            raise BundleError(
                f"bundle '{bundle.name}': generation.context_slide must be one of "
                f"{', '.join(CONTEXT_SLIDES)}, got {slide!r}"
            )
        decode_quantizers = bundle.generation.get("decode_quantizers")
        if decode_quantizers is not None and (
            isinstance(decode_quantizers, bool) or not isinstance(decode_quantizers, int)
        ):  # its range is checked by the constructor
            raise BundleError(
                f"bundle '{bundle.name}': generation.decode_quantizers must be an integer, "
                f"got {decode_quantizers!r}"
            )
        missing = [c for c in ("lm_semantic", "lm_coarse") if c not in lms]
        if (
            layout is not None
            and layout.fine_quantizers
            and "lm_fine" not in lms
            and (decode_quantizers is None or decode_quantizers > layout.coarse_quantizers)
        ):
            missing.append("lm_fine")
        if missing or layout is None:
            raise BundleError(
                f"bundle '{bundle.name}' is incomplete: no {', '.join(missing) or 'LMs'} "
                "(train them with 'audiogen-studio train lm-semantic|lm-coarse|lm-fine')"
            )
        if codec.config.sample_rate != bundle.sample_rate:
            raise BundleError(
                f"bundle '{bundle.name}': codec rate {codec.config.sample_rate} Hz differs from "
                f"the bundle's {bundle.sample_rate} Hz"
            )
        if tokenizer.n_tokens != layout.semantic_vocab or (
            codec.config.codebook_size != layout.codebook_size
        ):
            raise BundleError(
                f"bundle '{bundle.name}': the LMs were trained on another codec or tokenizer"
            )
        return cls(
            codec=codec,
            tokenizer=tokenizer,
            lm_semantic=lms["lm_semantic"],
            lm_coarse=lms["lm_coarse"],
            lm_fine=lms.get("lm_fine"),
            layout=layout,
            windows=windows,
            device=device,
            name=f"{bundle.name} {bundle.version}",
            stage_temperatures=stage_temperatures,
            decode_quantizers=decode_quantizers,
            adaptation=adaptation,
            coarse_guidance=float(guidance),
            semantic_cache=float(cache),
            choice=choice,
            level_match=level_match,
            slide=slide,
            beat_guidance=beat_guidance,
        )

    # -- request helpers -----------------------------------------------------------------------

    def expected_frames(self, request: GenerationRequest) -> int:
        """Frames each take has when the request completes (at the model's rate)."""
        return round(request.seconds * self.sample_rate)

    def _prompt(self, request: GenerationRequest, adaptation: AdaptationSettings) -> np.ndarray:
        """The end of the request's prompt that a request reads (:meth:`_heard_frames`, and a
        second more), mono at the model's rate ``[T]``, checked."""
        if request.mode != "continue":
            raise GenerationError(
                f"{self.name} continues audio; use a WaveNet vocoder bundle to vocode"
            )
        clip = request.prompt
        heard = self._heard_frames(adaptation) * self.hop_s / self.sample_rate + 1.0
        if clip.duration > heard:  # a long prompt: its start is never read
            # dropped on whole semantic frames (when they are whole samples of the prompt), so
            # the frames the engine reads are the same as in the whole prompt
            frame = Fraction(self.hop_s * clip.rate, self.sample_rate)
            drop = clip.frames - math.ceil(heard * clip.rate)
            if frame.denominator == 1:
                drop = drop // frame.numerator * frame.numerator
            clip = edit.crop(clip, drop)
        mono = io.resample(io.downmix(clip), self.sample_rate)
        audio = np.array(mono.samples[0], dtype=np.float32)
        if audio.size == 0:
            raise GenerationError("the prompt is empty")
        if not np.isfinite(audio).all():
            raise GenerationError("the prompt contains NaN or infinite samples")
        if float(np.max(np.abs(audio))) < SILENCE_PEAK:
            raise GenerationError(
                "the prompt is silent (peak below -80 dBFS): there is nothing to continue"
            )
        need = self.hop_s + round(MIN_CROSSFADE_SECONDS * self.sample_rate)
        if audio.size < need:
            raise GenerationError(
                f"the prompt is too short: {self.name} needs at least "
                f"{1000 * need / self.sample_rate:.0f} ms"
            )
        return audio

    # -- prompt adaptation -----------------------------------------------------------------------

    def adaptation_for(self, request: GenerationRequest) -> AdaptationSettings:
        """The adaptation ``request`` gets: the engine's settings with the request's steps."""
        return self.adaptation.with_steps(request.adapt_steps)

    def forget_adaptations(self) -> None:
        """Drop every adapted LM kept for earlier prompts (benchmarks time a fresh one)."""
        self._adapted.clear()

    def forget_beat_grids(self) -> None:
        """Drop the beat grids kept for earlier prompts (benchmarks time a fresh one)."""
        self._grids.clear()

    def _adaptation_ids(self, settings: AdaptationSettings, name: str) -> int:
        """Ids of one adaptation window of stage ``name``: its LM's context, or less when
        ``settings.seconds`` asks for less (at least two groups)."""
        stage = self.stages[name]
        ids = stage.model.config.max_seq_len
        if settings.seconds is not None:
            groups_per_second = self.layout.semantic_rate * (
                1 if name in ("semantic", "coarse") else self.layout.ratio
            )
            wanted = max(2, round(settings.seconds * groups_per_second)) * stage.group
            ids = min(ids, wanted)
        return ids

    def _adaptation_span(self, settings: AdaptationSettings) -> int:
        """Semantic tokens at the prompt's end that ``settings``' windows can cover."""
        span = 0
        for name in settings.stages:
            stage = self.stages.get(name)
            if stage is None:
                continue
            groups = self._adaptation_ids(settings, name) // stage.group  # per window
            per_group = 1 if name in ("semantic", "coarse") else 1 / self.layout.ratio
            span = max(span, math.ceil(settings.windows * groups * per_group))
        return span

    def _adapted_stages(
        self,
        settings: AdaptationSettings,
        semantic: torch.Tensor,
        codes: torch.Tensor,
        cancel: threading.Event | None,
    ) -> dict[str, _Stage]:
        """Each stage of ``settings`` replaced by its copy adapted to the prompt's tokens
        (``semantic [1, S]`` and the aligned ``codes [1, Q, S·ratio]`` of the prompt's end);
        the others as they are."""
        stages = dict(self.stages)
        for name in settings.stages:
            stage = stages.get(name)
            if stage is None:  # a bundle without a fine LM
                continue
            sequence, mask = self.layout.stage_sequence(name, semantic, codes)
            if sequence.shape[1] < 2 * stage.group:  # a prompt of one frame: nothing to learn
                log.info("prompt too short to adapt the %s LM to: not adapted", name)
                continue
            windows, window_mask = last_windows(
                sequence,
                mask,
                capacity=self._adaptation_ids(settings, name),
                group=stage.group,
                windows=settings.windows,
            )
            key = AdaptationCache.key(name, settings, windows)
            model = self._adapted.get(key)
            if model is None:
                started = time.perf_counter()
                model = adapt_copy(
                    stage.model,
                    windows,
                    window_mask,
                    steps=settings.steps,
                    lr=settings.lr,
                    spans=self.layout.stage_spans(name, windows.shape[1]),
                    mix=settings.mix,
                    blocks=settings.blocks,
                    should_stop=None if cancel is None else cancel.is_set,
                )
                if holds_float16_values(stage.model.parameters()):
                    # a bundle stored as float16: the copy keeps to float16 values too, as if
                    # saved and loaded like the bundle, so the fused CPU step streams half the
                    # bytes per token (the adaptation's change survives: ~2^-11 relative rounding)
                    round_to_float16_(model)
                self._accelerate(model)
                self._adapted.put(key, model)
                log.info(
                    "%s LM adapted to the prompt: %d steps on %s ids in %.2f s",
                    name,
                    settings.steps,
                    "x".join(map(str, windows.shape)),
                    time.perf_counter() - started,
                )
            stages[name] = _Stage(model, stage.window, stage.group, stage.name)
        return stages

    def _heard_frames(self, adaptation: AdaptationSettings) -> int:
        """Semantic frames at the prompt's end that a request reads at most: those the streams
        start with and the adaptation learns from, the tokenizer's context before them, and
        the codec frames the decoder is primed with (see :meth:`_prompt_tokens`)."""
        r = self.layout.ratio
        half = {n: st.model.config.max_seq_len // 2 // st.group for n, st in self.stages.items()}
        adapted = self._adaptation_span(adaptation) if adaptation.enabled else 0
        used = max(half["semantic"], half["coarse"], adapted)
        context = round(TOKENIZER_CONTEXT_SECONDS * self.sample_rate / self.hop_s)
        codes = max(used * r, half.get("fine", 0), PRIME_FRAMES) + ENCODE_MARGIN_FRAMES
        return max(used + context, -(-codes // r))

    def _prompt_tokens(self, audio: np.ndarray, adaptation: AdaptationSettings) -> _PromptTokens:
        """The tokens of ``audio [T]`` (the checked prompt) that a request starts from: its
        whole semantic frames ending >= :data:`MIN_CROSSFADE_SECONDS` before its end, and the
        codec codes of as many of its last frames as the streams, the decoder's priming and
        ``adaptation`` need (call under ``torch.inference_mode``)."""
        layout, r = self.layout, self.layout.ratio
        s_p = (audio.size - round(MIN_CROSSFADE_SECONDS * self.sample_rate)) // self.hop_s
        cond = torch.from_numpy(audio[: s_p * self.hop_s]).to(self.device)[None]
        # each stream starts with the prompt's last context (whole groups)
        half = {n: st.model.config.max_seq_len // 2 // st.group for n, st in self.stages.items()}
        keep = {
            "semantic": min(s_p, half["semantic"]),
            "coarse": min(s_p, half["coarse"]),
            "fine": min(s_p * r, half.get("fine", 0)),
        }
        a_keep = min(s_p, self._adaptation_span(adaptation)) if adaptation.enabled else 0
        # semantic tokens of the frames used, heard with TOKENIZER_CONTEXT_SECONDS before them
        used = max(keep["semantic"], keep["coarse"], a_keep)
        context = round(TOKENIZER_CONTEXT_SECONDS * self.sample_rate / self.hop_s)
        heard = max(0, s_p - used - context)  # the first frame the tokenizer hears
        semantic = self.tokenizer.tokens(cond[:, heard * self.hop_s :])[:, : s_p - heard]
        semantic = semantic[:, semantic.shape[1] - used :]
        # only the codes the streams and the decoder need are computed: the codec is causal
        # with a finite receptive field, so encoding from ENCODE_MARGIN_FRAMES earlier and
        # priming the decoder with PRIME_FRAMES give exactly the codes and state of the
        # whole prompt (tested for the named codec configs)
        f_p = s_p * r
        need = max(keep["coarse"] * r, keep["fine"], PRIME_FRAMES, a_keep * r)
        base = max(0, f_p - need - ENCODE_MARGIN_FRAMES)
        codes = self.codec.encode(cond[:, None, base * self.hop_c :], n_q=layout.quantizers)
        return _PromptTokens(semantic, s_p, codes[:, :, : f_p - base], base, keep, a_keep)

    def _adapt_to(
        self,
        prompt: _PromptTokens,
        adaptation: AdaptationSettings,
        cancel: threading.Event | None,
    ) -> dict[str, _Stage]:
        """The stages with those ``adaptation`` names adapted to ``prompt``'s last
        ``adapt_frames`` semantic frames (cached per prompt and settings)."""
        s_p, r, a = prompt.frames, self.layout.ratio, prompt.adapt_frames
        return self._adapted_stages(
            adaptation,
            prompt.last_semantic(a),
            prompt.codes[:, :, (s_p - a) * r - prompt.base :],
            cancel,
        )

    def prepare(self, request: GenerationRequest, cancel: threading.Event | None = None) -> bool:
        """Do now the per-prompt work :meth:`stream` would start with -- adapting the LMs to
        ``request``'s prompt -- and keep it, so that a stream of the same prompt and adaptation
        (any seed, takes or length) starts generating at once. An app calls it while the user
        is still choosing; it takes as long as the adaptation (~0.8 s on a 2-core CPU for the
        speech bundle) and stops between steps once ``cancel`` is set.

        With beat guidance on, it also finds the prompt's beat grid (:meth:`beat_guide`).

        Returns True when an adapted LM for this prompt is ready (made now or earlier), False
        when there is nothing to adapt (no adaptation, a prompt of one frame) or it was
        cancelled. A bad prompt raises :class:`GenerationError`, as :meth:`stream` would.
        """
        adaptation = self.adaptation_for(request)
        audio = self._prompt(request, adaptation)
        self.beat_guide(request, audio)  # the prompt's beat grid, kept for the stream
        if not adaptation.enabled:
            return False
        with torch.inference_mode():
            prompt = self._prompt_tokens(audio, adaptation)
            if not prompt.adapt_frames:
                return False
            try:
                stages = self._adapt_to(prompt, adaptation, cancel)
            except AdaptationCancelledError:
                return False
        return any(stages[n] is not stage for n, stage in self.stages.items())

    # -- token generation ------------------------------------------------------------------------

    def stage_temperature(self, request: GenerationRequest, stage: str) -> float:
        """The temperature ``stage`` samples at: the request's times the stage's factor."""
        factors = request.stage_temperatures
        if factors is None:
            factors = self.stage_temperatures
        return request.temperature * float(factors.get(stage, 1.0))

    def _sample(
        self,
        logits: torch.Tensor,
        request: GenerationRequest,
        generators: list[torch.Generator],
        span: tuple[int, int] | None,
        stage: str,
    ) -> torch.Tensor:
        """One token per take ``[B]`` from ``logits [B, V]`` of ``stage``, restricted to
        ``span`` ids."""
        ids = sample_next(
            logits.float().cpu(),
            temperature=self.stage_temperature(request, stage),
            top_k=request.top_k,
            top_p=request.top_p,
            generator=generators,
            allowed=span,
        )
        return ids.to(self.device)

    def _sample_into(
        self,
        stream: _Stream | _GuidedStream,
        count: int,
        spans: Callable[[int], tuple[int, int] | None],
        request: GenerationRequest,
        generators: list[torch.Generator],
        cancel: threading.Event | None,
        *,
        tilt: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sample ``count`` ids ``[B, count]`` onto ``stream`` (id ``i`` within ``spans(i)``),
        each from its logits passed through ``tilt`` first, if given.

        A greedy stage (temperature 0, e.g. the fine stage) on a plain stream runs them all in
        one fused call where it can (:meth:`_Stream.greedy`): the same ids, without a Python
        round trip per id."""
        if (
            tilt is None
            and type(stream) is _Stream
            and self.stage_temperature(request, stream.stage) == 0.0
            and not (cancel is not None and cancel.is_set())
        ):
            ids = stream.greedy(count, spans)
            if ids is not None:
                return ids.to(self.device)
        out = torch.empty(stream.tokens.shape[0], count, dtype=torch.long, device=self.device)
        for i in range(count):
            if cancel is not None and cancel.is_set():
                raise _CancelledError
            span = spans(i)
            logits = stream.next_logits(span)
            if tilt is not None:
                logits = tilt(logits)
            token = self._sample(logits, request, generators, span, stream.stage)
            out[:, i] = token
            stream.push(token[:, None])
        return out

    def level_match_for(self, request: GenerationRequest) -> LevelMatchSettings:
        """The level matching ``request`` gets: the bundle's, turned on or off by the request."""
        if request.level_match is None:
            return self.level_match
        return replace(self.level_match, enabled=request.level_match)

    def beat_guidance_for(self, request: GenerationRequest) -> BeatGuidanceSettings:
        """The beat guidance ``request`` gets: the bundle's, turned on or off by the request.

        Raises:
            GenerationError: the request turns it on for a bundle whose semantic tokens carry no
                onsets (not a music bundle).
        """
        if request.beat_guidance is None:
            return self.beat_guidance
        if request.beat_guidance and self._token_onsets is None:
            raise GenerationError(
                f"{self.name}: keeping the beat needs semantic tokens that carry onsets "
                "(a music bundle's chroma tokenizer)"
            )
        return replace(self.beat_guidance, enabled=request.beat_guidance)

    def beat_guide(self, request: GenerationRequest, audio: np.ndarray) -> BeatGuide | None:
        """The semantic stage's tilt for ``request`` and its checked prompt ``audio [T]``;
        ``None`` when it is off or the prompt has no clear pulse."""
        settings = self.beat_guidance_for(request)
        if not settings.enabled or self._token_onsets is None:
            return None
        grid = self._beat_grid(audio, settings.min_clarity)
        if grid is None:
            log.info("no beat grid in the prompt: the semantic stage is not guided")
            return None
        log.debug(
            "beat grid %.1f BPM, phase %.3f s, clarity %.2f", grid.bpm, grid.phase, grid.clarity
        )
        return BeatGuide(grid, self._token_onsets, settings, self.hop_s / self.sample_rate)

    def _beat_grid(self, audio: np.ndarray, min_clarity: float) -> BeatGrid | None:
        """:func:`estimate_beat_grid` of the checked prompt ``audio [T]``, kept for the last
        few prompts (:meth:`prepare` makes it ahead; 6.6 ms for a 3-s prompt on a 2-core CPU,
        ``benchmarks/beat_guidance.py``)."""
        heard = audio[max(0, audio.size - round(GRID_SECONDS * self.sample_rate)) :]
        digest = hashlib.sha256(np.ascontiguousarray(heard).tobytes())
        digest.update(repr((audio.size, min_clarity)).encode())
        key = digest.hexdigest()
        if key in self._grids:
            self._grids.move_to_end(key)
            return self._grids[key]
        grid = estimate_beat_grid(audio, self.sample_rate, min_clarity=min_clarity)
        self._grids[key] = grid
        while len(self._grids) > 4:
            self._grids.popitem(last=False)
        return grid

    def candidates_for(self, request: GenerationRequest) -> int:
        """Candidate beginnings per take ``request`` gets: its own, else the bundle's
        (``GenerationError`` for several with nothing to rank them by)."""
        return self.choice.candidates_for(request, self.name)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[AudioChunk]:
        """Yield ``[1, n]`` float32 chunks of every take at the model's rate (module doc).

        With ``N > 1`` candidates per take the streams run ``takes·N`` rows (take ``b``'s
        candidate ``c`` in row ``b·N + c``, sampling with its own generator; candidate 0 is the
        take a request without candidates makes) until ``choose_after`` seconds of each are
        decoded; then each take keeps its candidate whose audio matches the prompt best
        (:mod:`~audiogen_studio.engine.take_ranking`), every stream goes on with those rows alone
        and the held audio is yielded. A kept candidate goes on as it would have in the batch:
        the same tokens, so the same audio up to float rounding (tested).
        """
        adaptation = self.adaptation_for(request)
        audio = self._prompt(request, adaptation)
        seed = request.resolved_seed()
        takes = request.takes
        n_cand = self.candidates_for(request)
        aspect: Aspect = self.choice.aspect_for(request) or "voice"  # read with candidates only
        rows = takes * n_cand
        generators = [
            torch.Generator().manual_seed(_take_seed(seed, b, c))
            for b in range(takes)
            for c in range(n_cand)
        ]
        layout, r = self.layout, self.layout.ratio
        qc, qf = layout.coarse_quantizers, layout.fine_quantizers
        rate, hop_s = self.sample_rate, self.hop_s
        matching = self.level_match_for(request)
        follower = LevelFollower(audio, rows, rate, matching) if matching.enabled else None
        guide = self.beat_guide(request, audio)
        started = time.perf_counter()

        def coarse_span(i: int) -> tuple[int, int] | None:
            return layout.coarse_range(i % qc)

        def fine_span(i: int) -> tuple[int, int] | None:
            return layout.fine_range(i % qf)

        with torch.inference_mode():
            prompt = self._prompt_tokens(audio, adaptation)
            s_p, base = prompt.frames, prompt.base
            keep = prompt.keep
            s_keep, c_keep, f_keep = keep["semantic"], keep["coarse"], keep["fine"]
            semantic = prompt.semantic.expand(rows, -1).clone()  # [R, S]: the last S frames
            codes = prompt.codes.expand(rows, -1, -1).clone()  # [R, Q, F_p - base]
            stages = self.stages
            if prompt.adapt_frames:
                try:
                    stages = self._adapt_to(prompt, adaptation, cancel)
                except AdaptationCancelledError:
                    log.info("generation cancelled while adapting to the prompt")
                    return
            decoder = self.codec.stream_decoder(rows)
            kq = self.decode_quantizers
            primer = codes[:, :kq, -PRIME_FRAMES:]
            decoder.push(primer)  # primes the state; its audio is unused
            used = semantic.shape[1]
            sem_ids = semantic[:, used - s_keep :]
            sem_stream = (
                _CacheMixedStream(
                    stages["semantic"], sem_ids, mix=self.semantic_cache, slide=self.slide
                )
                if self.semantic_cache > 0
                else _Stream(stages["semantic"], sem_ids, self.slide)
            )
            coarse_ids = layout.coarse_sequence(
                semantic[:, used - c_keep :], codes[:, :qc, (s_p - c_keep) * r - base :]
            )[0]
            coarse_stream: _Stream | _GuidedStream = (
                _Stream(stages["coarse"], coarse_ids, self.slide)
                if self.coarse_guidance == 1.0
                else _GuidedStream(
                    stages["coarse"],
                    coarse_ids,
                    scale=self.coarse_guidance,
                    null_id=layout.coarse_sep,
                    slide=self.slide,
                )
            )
            tilt = None
            if guide is not None:
                first_frame = s_p - s_keep  # the prompt frame the semantic stream starts at

                def tilt(logits: torch.Tensor) -> torch.Tensor:
                    return guide.apply(logits, first_frame + sem_stream.tokens.shape[1])

            fine_stream = None
            if qf and kq > qc:  # the constructor made sure the fine LM is there
                fine_stream = _Stream(
                    stages["fine"],
                    layout.fine_sequence(codes[:, :qc, -f_keep:], codes[:, qc:, -f_keep:])[0]
                    if f_keep
                    else torch.empty(rows, 0, dtype=torch.long, device=self.device),
                    self.slide,
                )
            lead = audio.size - s_p * hop_s  # generated samples that overlap the prompt's end
            skip = self.latency  # decoded samples that still render the primed frames
            wanted = self.expected_frames(request)
            needed_tokens = -(-(skip + lead + wanted) // hop_s)
            first = max(
                round(FIRST_WINDOW_SECONDS * layout.semantic_rate), -(-(skip + lead + 1) // hop_s)
            )
            done_tokens = 0
            emitted = 0  # continuation samples handed out (after the prompt's end)
            first_window = True
            chunk = max(1, round(request.chunk_seconds * rate))
            # candidates: what is held back until the choice (row-major like the streams)
            choose_at = min(wanted, round(self.choice.choose_after * rate)) if n_cand > 1 else 0
            held: list[tuple[int, np.ndarray, np.ndarray | None]] = []  # (start, wave, lead_in)
            held_codes: list[torch.Tensor] = []  # [R, kq, n·r] per window, to re-prime

            def chunks(
                start: int, wave: np.ndarray, lead_in: np.ndarray | None
            ) -> Iterator[AudioChunk]:
                """``wave [takes, n]`` (continuation samples from ``start``) as chunks."""
                elapsed = time.perf_counter() - started
                done = max(start + wave.shape[1], 1)
                for off in range(0, wave.shape[1], chunk):
                    piece = wave[:, off : off + chunk]
                    for b in range(takes):
                        yield AudioChunk(
                            take=b,
                            start=start + off,
                            samples=np.ascontiguousarray(piece[b : b + 1], dtype=np.float32),
                            rate=rate,
                            progress=min(1.0, (start + off + piece.shape[1]) / max(wanted, 1)),
                            seed=seed,
                            info={"rtf": elapsed / max(done / rate, 1e-9)},
                            lead_in=(
                                np.ascontiguousarray(lead_in[b : b + 1], dtype=np.float32)
                                if lead_in is not None and off == 0
                                else None
                            ),
                        )

            def choose() -> torch.Tensor:
                """Each take's best candidate by its held audio: the rows ``[takes]`` to keep
                (candidate 0 of a take whose audio is too short to rank, e.g. when stopped)."""
                heard = np.concatenate([w for _, w, _ in held], axis=1)  # [R, n]
                best = []
                for b in range(takes):
                    try:
                        scores = [
                            match_score(audio, heard[b * n_cand + c], rate, aspect)
                            for c in range(n_cand)
                        ]
                        best.append(b * n_cand + int(np.argmax(scores)))
                        log.debug("take %d: candidate scores %s", b, np.round(scores, 4))
                    except RankingError:
                        best.append(b * n_cand)
                return torch.tensor(best, dtype=torch.long)

            def release(kept: torch.Tensor) -> Iterator[AudioChunk]:
                """The held audio of the kept rows, as chunks."""
                index = kept.numpy()
                for start, wave, lead_in in held:
                    yield from chunks(
                        start, wave[index], None if lead_in is None else lead_in[index]
                    )
                held.clear()

            try:
                while done_tokens < needed_tokens:
                    step = first if done_tokens == 0 else self.window_tokens
                    n = min(step, needed_tokens - done_tokens)
                    # 1. semantic continuation
                    new_sem = self._sample_into(
                        sem_stream, n, lambda i: None, request, generators, cancel, tilt=tilt
                    )
                    # 2. coarse codes of each new semantic token's frames
                    coarse_parts = []
                    for j in range(n):
                        coarse_stream.push(new_sem[:, j : j + 1])
                        ids = self._sample_into(
                            coarse_stream, r * qc, coarse_span, request, generators, cancel
                        )
                        coarse_parts.append(layout.coarse_codes(ids))  # [R, Qc, r]
                    coarse = torch.cat(coarse_parts, dim=2)  # [R, Qc, n·r]
                    # 3. fine codes of each new frame
                    if fine_stream is not None:
                        fine_parts = []
                        for f in range(coarse.shape[2]):
                            fine_stream.push(layout.fine_context_ids(coarse[:, :, f : f + 1]))
                            ids = self._sample_into(
                                fine_stream, qf, fine_span, request, generators, cancel
                            )
                            fine_parts.append(layout.fine_codes(ids))  # [R, Qf, 1]
                        window_codes = torch.cat([coarse, torch.cat(fine_parts, dim=2)], dim=1)
                    else:
                        window_codes = coarse
                    done_tokens += n
                    # 4. streaming decode of the window
                    decoded = decoder.push(window_codes[:, :kq])[:, 0]  # [R, n·hop_s]
                    wave = decoded.float().cpu().numpy()
                    lead_in = None
                    if first_window:
                        lead_in, wave = wave[:, skip : skip + lead], wave[:, skip + lead :]
                        first_window = False
                    start = emitted
                    wave = wave[:, : max(0, wanted - start)]
                    if follower is not None:
                        wave, lead_in = follower.apply(wave, lead_in)
                    emitted += wave.shape[1]
                    if rows == takes:
                        yield from chunks(start, wave, lead_in)
                        continue
                    # 5. candidates: hold the audio back until each take's best is known
                    held.append((start, wave, lead_in))
                    held_codes.append(window_codes[:, :kq])
                    if emitted < choose_at and done_tokens < needed_tokens:
                        continue
                    kept = choose()
                    for stream in (sem_stream, coarse_stream, fine_stream):
                        if stream is not None:
                            stream.keep(kept)
                    generators = [generators[i] for i in kept.tolist()]
                    if follower is not None:
                        follower.keep(kept.numpy())
                    rows = takes
                    # a decoder of the kept rows, in the state their codes leave it in
                    decoder = self.codec.stream_decoder(takes)
                    decoder.push(primer[kept])
                    decoder.push(torch.cat(held_codes, dim=2)[kept])
                    held_codes.clear()
                    yield from release(kept)
            except _CancelledError:
                log.info("generation cancelled after %d samples", emitted)
                if held:  # what the candidates made so far: the best of it is the partial take
                    yield from release(choose())
                return
