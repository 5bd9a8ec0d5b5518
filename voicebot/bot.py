"""The bot's shared resources, loaded once per process, and the calls made from them.

Models (recogniser, synthesiser) and the FAQ are heavy and shared by every call; a
call session is light and per call. ``prepare`` does the slow start-up work (model
files, rendering every fixed utterance to the speech cache) before the first call, so
that no caller waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from faq.store import Faq
from voicebot.asr.base import Recognizer
from voicebot.call import CallConfig, CallSession
from voicebot.clock import Clock
from voicebot.config import Settings
from voicebot.dialogue import Dialogue
from voicebot.events import EventSink
from voicebot.transport import CallTransport
from voicebot.tts.base import Synthesizer
from voicebot.tts.cache import PrerenderResult, SpeechCache, fixed_utterances, format_duration
from voicebot.understanding import Understanding
from voicebot.voice import Voice
from voicebot.waiting import WaitPolicy

log = logging.getLogger(__name__)


def make_recognizer(settings: Settings, faq: Faq | None = None) -> Recognizer:
    asr = settings.asr
    if asr.backend == "vosk":
        from voicebot.asr.vosk import VoskRecognizer, find_vosk_model

        model = asr.vosk_model_dir or find_vosk_model()
        if model is None:
            from voicebot.asr.base import RecognizerError

            raise RecognizerError(
                "no Japanese Vosk model installed: run `voicebot models download vosk-ja-small` "
                "or set [asr] vosk_model_dir"
            )
        return VoskRecognizer(model)
    from voicebot.asr.whisper import WhisperRecognizer, faq_vocabulary_prompt

    return WhisperRecognizer(
        asr.whisper_model_dir,
        compute_type=asr.compute_type,
        cpu_threads=asr.cpu_threads,
        workers=asr.workers,
        beam_size=asr.beam_size,
        busy_beam_size=asr.busy_beam_size,
        pad_seconds=asr.pad_seconds,
        initial_prompt=asr.initial_prompt
        or (faq_vocabulary_prompt(faq) if asr.faq_prompt and faq else None),
        extra_prompts=extra_hints(asr.extra_hints, faq),
        n_best=asr.n_best,
        vocabulary=asr.vocabulary,
        extras_on_demand=asr.extras_on_demand,
    )


def extra_hints(names: list[str], faq: Faq | None) -> list[str | None]:
    """The extra Whisper hints named in ``[asr] extra_hints`` (an FAQ hint needs the FAQ)."""
    from voicebot.asr.whisper import faq_category_prompt

    hints: list[str | None] = []
    for name in names:
        if name == "none":
            hints.append(None)
        elif faq is not None:
            hints.append(faq_category_prompt(faq))
    return list(dict.fromkeys(hints))


def make_synthesizer(settings: Settings, parallel: int | None = None) -> Synthesizer:
    """The configured voice; `parallel` overrides ``[tts] parallel`` (syntheses at once)."""
    tts = settings.tts
    if tts.engine == "pyttsx3":
        from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer

        return Pyttsx3Synthesizer(tts.voice)
    from voicebot.tts.kokoro import KokoroSynthesizer, OnnxOptions, configure

    configure(OnnxOptions(intra_op_threads=tts.threads), workers=parallel or tts.parallel)
    return KokoroSynthesizer(tts.voice or "jf_alpha")


class Bot:
    """Everything a call needs that is shared between calls."""

    def __init__(
        self,
        settings: Settings,
        understanding: Understanding | None = None,
        recognizer: Recognizer | None = None,
        synthesizer: Synthesizer | None = None,
    ):
        self.settings = settings
        self.understanding = understanding or Understanding.load(settings)
        self.recognizer = recognizer or make_recognizer(settings, self.understanding.faq)
        self.synthesizer = synthesizer or make_synthesizer(settings)
        self.speech_cache = SpeechCache(self.synthesizer, settings.tts.cache_dir)
        self.voice = Voice(self.speech_cache)
        self.rendering: asyncio.Task[PrerenderResult] | None = None  # prepare(background=True)

    async def prepare(
        self,
        rates: tuple[int, ...] = (8000,),
        progress: Callable[[int, int, str], None] | None = None,
        background: bool = False,
    ) -> None:
        """Load models and render every fixed utterance ahead of the first call.

        With ``background`` (the service) only the prompts every call needs are rendered
        before returning; the answers and confirmations follow in ``self.rendering`` (most
        likely questions first, see `fixed_utterances`), so a first start with Kokoro takes
        calls within a minute instead of after half an hour. Until it is done an
        answer not yet rendered is synthesised when asked for, which makes the caller wait
        longer, so how long that will last is logged (``voicebot prerender`` renders
        everything before the service starts instead).
        """
        load = getattr(self.recognizer, "load", None)
        if load is not None:
            await asyncio.to_thread(load)
        faq = self.understanding.faq
        if not background:
            await self._render(fixed_utterances(faq), rates, progress)
            return
        first = fixed_utterances(faq, per_entry=False)
        await self._render(first, rates, progress)
        rest = [t for t in fixed_utterances(faq) if t not in set(first)]
        announce = self._announce_estimate(rest)
        self.rendering = asyncio.create_task(self._render(rest, rates, announce), name="prerender")

    def _announce_estimate(self, texts: list[str]) -> Callable[[int, int, str], None] | None:
        """Log how long until every text in `texts` is rendered; a progress callback that
        logs it after the first synthesis when nothing was synthesised to measure yet."""
        cache = self.speech_cache
        parallel = getattr(self.synthesizer, "parallel", 1)
        pending = cache.uncached(texts)
        if not pending:
            log.info("speech cache: all %d answers and confirmations are rendered", len(texts))
            return None

        def estimate() -> bool:
            left = cache.estimate_seconds(pending, parallel)
            if left is None:
                return False
            log.info(
                "speech cache: rendering %d answers and confirmations in the background; "
                "every answer ready in about %s (%.2f s per character so far)",
                len(cache.uncached(pending)),
                format_duration(left),
                cache.synthesis_seconds / cache.synthesized_chars,
            )
            return True

        if estimate():
            return None
        log.info(
            "speech cache: rendering %d answers and confirmations in the background; "
            "the time it takes follows after the first",
            len(pending),
        )
        told = False

        def progress(done: int, total: int, text: str) -> None:
            nonlocal told
            if not told:
                told = estimate()

        return progress

    async def _render(
        self,
        texts: list[str],
        rates: tuple[int, ...],
        progress: Callable[[int, int, str], None] | None,
    ) -> PrerenderResult:
        result = await self.speech_cache.prerender(texts, progress)
        log.info(
            "speech cache: %d utterances (%d rendered now, %d cached) in %s",
            result.total,
            result.rendered,
            result.cached,
            format_duration(result.seconds),
        )
        for rate in rates:
            await self.voice.warm(texts, rate)
        return result

    async def reload_faq(
        self,
        faq: Faq,
        rates: tuple[int, ...] = (8000,),
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        """Switch to a newly published FAQ without dropping calls.

        The new answers are rendered into the speech cache first, then new calls get the
        new FAQ; calls in progress finish with the one they started with.
        """
        from faq.matcher import Matcher

        matcher = await asyncio.to_thread(Matcher, faq)
        texts = fixed_utterances(faq)
        await self.speech_cache.prerender(texts, progress)
        for rate in rates:
            await self.voice.warm(texts, rate)
        self.understanding = Understanding(faq=faq, matcher=matcher, settings=self.settings)
        asr = self.settings.asr
        if hasattr(self.recognizer, "initial_prompt") and asr.faq_prompt and not asr.initial_prompt:
            from voicebot.asr.whisper import faq_vocabulary_prompt

            self.recognizer.initial_prompt = faq_vocabulary_prompt(faq)
        if hasattr(self.recognizer, "extra_prompts"):
            self.recognizer.extra_prompts = tuple(extra_hints(asr.extra_hints, faq))
        log.info("FAQ reloaded: %d entries", len(faq))

    def call_config(self) -> CallConfig:
        call = self.settings.call
        return CallConfig(
            endpointing=call.endpointing,
            yes_no_min_speech_ms=call.yes_no_min_speech_ms,
            speculative=call.speculative_recognition,
            speculation_decode_after_ms=call.speculation_decode_after_ms,
            hold_incomplete_ms=call.hold_incomplete_ms,
            merge_window_ms=call.merge_window_ms,
            held_no_input_ms=call.held_no_input_ms,
            waiting=WaitPolicy(
                ack_after_ms=call.ack_after_ms,
                filler_after_ms=call.filler_after_ms,
                give_up_after_ms=call.give_up_after_ms,
            ),
        )

    def session(
        self,
        transport: CallTransport,
        clock: Clock,
        events: EventSink,
        call_id: str | None = None,
        **dialogue_kw,
    ) -> CallSession:
        """A new call over ``transport``."""
        dialogue = Dialogue(
            self.understanding, max_turns=self.settings.call.max_turns, **dialogue_kw
        )
        return CallSession(
            transport=transport,
            understanding=self.understanding,
            recognizer=self.recognizer,
            voice=self.voice,
            events=events,
            clock=clock,
            config=self.call_config(),
            dialogue=dialogue,
            call_id=call_id,
        )
