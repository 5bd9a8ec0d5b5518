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
from voicebot.tts.cache import SpeechCache, fixed_utterances
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


def make_synthesizer(settings: Settings) -> Synthesizer:
    tts = settings.tts
    if tts.engine == "pyttsx3":
        from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer

        return Pyttsx3Synthesizer(tts.voice)
    from voicebot.tts.kokoro import KokoroSynthesizer

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
        self.rendering: asyncio.Task[None] | None = None  # prepare(background=True)

    async def prepare(
        self,
        rates: tuple[int, ...] = (8000,),
        progress: Callable[[int, int, str], None] | None = None,
        background: bool = False,
    ) -> None:
        """Load models and render every fixed utterance ahead of the first call.

        With ``background`` (the service) only the prompts every call needs are rendered
        before returning; the answers and confirmations follow in ``self.rendering``, so a
        first start with Kokoro (about real time on two cores) takes calls within minutes
        instead of half an hour. Until it is done an answer not yet rendered is synthesised
        when asked for, which makes the caller wait longer.
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
        self.rendering = asyncio.create_task(self._render(rest, rates, None), name="prerender")

    async def _render(
        self,
        texts: list[str],
        rates: tuple[int, ...],
        progress: Callable[[int, int, str], None] | None,
    ) -> None:
        result = await self.speech_cache.prerender(texts, progress)
        log.info(
            "speech cache: %d utterances (%d rendered now, %d cached) in %.1fs",
            result.total,
            result.rendered,
            result.cached,
            result.seconds,
        )
        for rate in rates:
            await self.voice.warm(texts, rate)

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
            hold_incomplete_ms=call.hold_incomplete_ms,
            merge_window_ms=call.merge_window_ms,
            waiting=WaitPolicy(
                filler_after_ms=call.filler_after_ms, give_up_after_ms=call.give_up_after_ms
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
