"""No caller left in silence: fillers, sentence-by-sentence answers, giving up, hang-ups.

Whole calls on recorded caller audio with the real VAD, the real Whisper model and the
real pyttsx3 voice. What is slow is made slow on purpose: recognition by charging it a
fixed time on the virtual clock, synthesis by a wrapper that sleeps before the real
synthesiser runs (the virtual clock is charged with the time it really took). Silence is
measured on the bot's audio as the caller hears it, frame by frame, not from events.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import time

import numpy as np
from test_call import CLEAR_VOICE, OPEN, caller_track

from voicebot import prompts
from voicebot.bot import Bot
from voicebot.call import CallResult
from voicebot.clock import VirtualClock
from voicebot.config import Settings
from voicebot.events import (
    BotSpeechStarted,
    ComponentFailed,
    EventFanout,
    EventRecorder,
    TransferRequested,
)
from voicebot.recorded_call import RecordedCaller
from voicebot.tts.cache import split_sentences
from voicebot.waiting import WaitPolicy
from voicebot.wavfile import WavAudio

FRAME_MS = 20
QUESTION = "納付書を再発行してもらえますか"
ANSWER_ID = "payment.lost-notice"


def question_track(pause_s: float):
    """The question, then a pause, in the voice this Xeon hears clearly enough to
    answer (``CLEAR_VOICE``): these tests are about waiting, not about hearing."""
    return caller_track(QUESTION, pause_s, voice=CLEAR_VOICE)


class SlowOn:
    """The real synthesiser, made slow for the given texts and each sentence of them: FAQ
    answers on a first start under load, or a prompt whose audio was lost."""

    def __init__(self, inner, texts: list[str], delay_s: float):
        self.inner = inner
        self.engine, self.voice, self.sample_rate = inner.engine, inner.voice, inner.sample_rate
        self.slow = {*texts, *(s for t in texts for s in split_sentences(t))}
        self.delay_s = delay_s
        self.slow_calls: list[str] = []

    async def synthesize(self, text: str):
        if text in self.slow:
            self.slow_calls.append(text)
            time.sleep(self.delay_s)  # blocking on purpose: the virtual clock measures it
        return await self.inner.synthesize(text)


def first_start_bot(settings: Settings, bot: Bot, tmp_path, delay_s: float) -> Bot:
    """A bot on a fresh cache whose answers are not rendered yet, with a synthesiser slow
    on every answer. The prompts, fillers among them, are rendered before any call is
    taken, so they stay fast."""
    s = settings.model_copy(deep=True)
    s.tts.cache_dir = tmp_path
    faq = bot.understanding.faq
    fresh = Bot(
        s,
        understanding=bot.understanding,
        recognizer=bot.recognizer,
        synthesizer=SlowOn(bot.synthesizer, [faq.answer_text(e) for e in faq], delay_s),
    )

    async def prompts_only() -> None:  # what the service renders before taking calls
        await fresh.prepare(rates=(8000,), background=True)
        assert fresh.rendering is not None
        fresh.rendering.cancel()  # the answers are "still rendering" for this call

    asyncio.run(prompts_only())
    fresh.synthesizer.slow_calls.clear()  # what the cancelled background rendering began
    return fresh


def run_call(
    bot: Bot, audio: WavAudio, recognition_ms: float, caller_cls=RecordedCaller
) -> tuple[CallResult, RecordedCaller, EventRecorder]:
    clock = VirtualClock(work_ms=recognition_ms)
    caller = caller_cls(audio, clock)
    recorder = EventRecorder()
    session = bot.session(caller, clock, EventFanout(caller, recorder), now=lambda: OPEN)
    result = asyncio.run(session.run())
    return result, caller, recorder


def sounding(frames: list[np.ndarray], threshold: int = 300) -> np.ndarray:
    """Per 20 ms frame of the bot's channel: is anything audible."""
    return np.array([np.abs(f).max() > threshold for f in frames])


def first_sound_after(frames: list[np.ndarray], t_ms: float) -> float:
    loud = sounding(frames)
    i = int(t_ms // FRAME_MS)
    hits = np.flatnonzero(loud[i:])
    assert len(hits), "the bot never spoke after the caller's question"
    return (i + hits[0]) * FRAME_MS


def longest_silence(frames: list[np.ndarray], start_ms: float, end_ms: float) -> float:
    """Longest run of silent frames on the bot's channel between two call times."""
    loud = sounding(frames)[int(start_ms // FRAME_MS) : int(end_ms // FRAME_MS)]
    longest = run = 0
    for x in loud:
        run = 0 if x else run + 1
        longest = max(longest, run)
    return longest * FRAME_MS


def last_sound(frames: list[np.ndarray]) -> float:
    return np.flatnonzero(sounding(frames))[-1] * FRAME_MS


def test_first_start_plays_a_filler_then_the_answer_sentence_by_sentence(settings, bot, tmp_path):
    slow = first_start_bot(settings, bot, tmp_path, delay_s=1.5)
    result, caller, events = run_call(slow, question_track(12.0), recognition_ms=400.0)
    turn = next(t for t in result.turns if t.heard)
    assert turn.faq_id == ANSWER_ID and turn.action == "answer"
    sentences = split_sentences(slow.understanding.faq.answer_text(ANSWER_ID))
    assert len(sentences) >= 2
    # The answer was synthesised a sentence at a time, never whole.
    assert slow.synthesizer.slow_calls[: len(sentences)] == sentences

    started = events.of_type(BotSpeechStarted)
    kinds = [e.kind for e in started]
    assert kinds[:2] == ["greeting", "filler"] and "answer" in kinds
    assert set(kinds[1 : kinds.index("answer")]) == {"filler"}
    assert started[1].text == prompts.ACKNOWLEDGE  # 「はい。」 first
    # The caller hears the filler within a second of the end of their question...
    heard_at = first_sound_after(caller.bot_out, turn.speech_end_ms)
    assert heard_at - turn.speech_end_ms <= 1000
    assert turn.first_audio_ms is not None and turn.first_audio_ms <= 1000
    assert turn.fillers >= 1
    # ...then the first sentence long before the whole answer could have been rendered,
    rendering_whole = 1500 * len(sentences)
    assert turn.latency_ms < rendering_whole
    # ...and no second of silence from the question to the end of the answer.
    assert longest_silence(caller.bot_out, turn.speech_end_ms, last_sound(caller.bot_out)) <= 1000


def test_slow_recognition_gets_a_filler_too(bot):
    result, caller, events = run_call(bot, question_track(6.0), recognition_ms=2500.0)
    turn = next(t for t in result.turns if t.heard)
    assert turn.faq_id == ANSWER_ID
    fillers = [e for e in events.of_type(BotSpeechStarted) if e.kind == "filler"]
    assert [f.text for f in fillers[:2]] == [prompts.ACKNOWLEDGE, prompts.FILLER]
    assert fillers[0].latency_ms <= WaitPolicy().ack_after_ms + 40
    assert first_sound_after(caller.bot_out, turn.speech_end_ms) - turn.speech_end_ms <= 1000
    assert turn.latency_ms >= 2500  # the answer itself came after the recognition


def test_a_quick_reply_has_no_filler(bot):
    result, _caller, events = run_call(bot, question_track(6.0), recognition_ms=200.0)
    turn = next(t for t in result.turns if t.heard)
    assert turn.fillers == 0 and turn.latency_ms < WaitPolicy().ack_after_ms
    assert "filler" not in [e.kind for e in events.of_type(BotSpeechStarted)]


def test_a_stalled_synthesiser_is_bridged_then_handed_over(settings, bot, tmp_path):
    # The first sentence takes 3 s; the bot gives up after 2 s (12 s in service).
    slow = first_start_bot(settings, bot, tmp_path, delay_s=3.0)
    slow.settings.call.give_up_after_ms = 2000
    result, caller, events = run_call(slow, question_track(12.0), recognition_ms=400.0)
    assert result.outcome == "transferred"
    assert caller.transferred_to.reason == "failure"
    failed = events.of_type(ComponentFailed)
    assert [(f.component, f.error) for f in failed] == [("synthesizer", "stalled")]
    question = next(t for t in result.turns if t.heard)
    kinds = [e.kind for e in events.of_type(BotSpeechStarted)]
    assert kinds[0] == "greeting" and kinds[-1] == "failure"
    assert set(kinds[1:-1]) == {"filler"}
    # Fillers kept the line alive until the apology, and the apology was heard.
    apology = result.turns[-1]
    assert apology.said.startswith("申し訳ありません")
    assert (
        longest_silence(caller.bot_out, question.speech_end_ms, last_sound(caller.bot_out)) <= 1000
    )


def stalling_bot(settings: Settings, bot: Bot, tmp_path, stuck: str) -> Bot:
    """A bot whose voice is stuck on ``stuck``: its audio is lost from a copy of the speech
    cache and the synthesiser takes 3 s over it (the bot gives up after 2 s)."""
    s = settings.model_copy(deep=True)
    s.tts.cache_dir = tmp_path / "cache"
    shutil.copytree(settings.tts.cache_dir, s.tts.cache_dir)
    stalled = Bot(
        s,
        understanding=bot.understanding,
        recognizer=bot.recognizer,
        synthesizer=SlowOn(bot.synthesizer, [stuck], delay_s=3.0),
    )
    for text in [stuck, *split_sentences(stuck)]:
        stalled.speech_cache.path(text).unlink(missing_ok=True)
    stalled.settings.call.give_up_after_ms = 2000  # 12 s in service
    return stalled


def test_a_stalled_greeting_is_bridged_then_handed_over(settings, bot, tmp_path):
    """The greeting will not render: the caller, who has said nothing yet, hears
    「少々お待ちください。」 (not 「はい。」), then the apology, and is handed to staff."""
    stalled = stalling_bot(settings, bot, tmp_path, prompts.GREETING)
    result, caller, events = run_call(stalled, caller_track(8.0), recognition_ms=400.0)
    assert result.outcome == "transferred" and caller.transferred_to.reason == "failure"
    failed = events.of_type(ComponentFailed)
    assert [(f.component, f.error) for f in failed] == [("synthesizer", "stalled")]
    started = events.of_type(BotSpeechStarted)
    assert [e.kind for e in started][-1] == "failure" and "greeting" not in [
        e.kind for e in started
    ]
    assert started[0].kind == "filler" and started[0].text == prompts.FILLER
    assert started[0].t_ms <= 1000  # the line is not dead for more than a second
    assert longest_silence(caller.bot_out, started[0].t_ms, last_sound(caller.bot_out)) <= 1000


def test_staff_not_reached_then_a_stalled_voice_ends_the_call_politely(settings, bot, tmp_path):
    """The caller asks for staff; nobody can be reached; the news of it will not render
    (its audio lost from the cache, the synthesiser stuck). The wait for it is filled and
    bounded like any other: a filler, then an apology with the hours and a goodbye, and no
    second hand-over, since staff were just found unreachable."""
    hours = bot.understanding.faq.city.office_hours
    stuck = prompts.TRANSFER_FAILED.format(office_hours=hours)
    stalled = stalling_bot(settings, bot, tmp_path, stuck)
    audio = caller_track("担当の方と直接話したいです", 20.0)
    refusing = functools.partial(RecordedCaller, transfer_ok=False)
    result, caller, events = run_call(stalled, audio, recognition_ms=400.0, caller_cls=refusing)

    assert result.outcome == "completed" and caller.transferred_to is None
    assert len(events.of_type(TransferRequested)) == 1  # staff were not rung twice
    failed = events.of_type(ComponentFailed)
    assert [(f.component, f.error) for f in failed] == [("synthesizer", "stalled")]
    started = events.of_type(BotSpeechStarted)
    notice = next(i for i, e in enumerate(started) if e.kind == "transfer")
    after = started[notice + 1 :]
    kinds = [e.kind for e in after]
    assert kinds[0] == "filler" and kinds[-1] == "failure" and "transfer_failed" not in kinds
    # Nobody had just spoken to be acknowledged: 「少々お待ちください。」, not 「はい。」.
    assert after[0].text == prompts.FILLER
    closing = result.turns[-1]
    assert (
        closing.said
        == prompts.APOLOGY_FAILURE_CLOSED
        + prompts.CALL_AGAIN.format(office_hours=hours)
        + prompts.GOODBYE
    )
    # From the transfer notice to the goodbye, never a second of silence.
    assert longest_silence(caller.bot_out, started[notice].t_ms, last_sound(caller.bot_out)) <= (
        1000
    )


class ImpatientCaller(RecordedCaller):
    """Hangs up as soon as the recording ends, answered or not."""

    def _should_hang_up(self, t: float) -> bool:
        return self._track_started_ms is not None and t >= self._track_started_ms + self.track_ms


def test_a_caller_who_hangs_up_in_silence_is_not_a_completed_call(bot):
    result, _caller, _events = run_call(
        bot, question_track(0.6), recognition_ms=3000.0, caller_cls=ImpatientCaller
    )
    assert result.outcome == "hung_up_waiting"
    assert all(t.reply_start_ms is None for t in result.turns if t.heard)


def test_a_caller_who_hangs_up_early_in_the_answer_gave_up_waiting(bot):
    result, _caller, _events = run_call(
        bot, question_track(2.0), recognition_ms=400.0, caller_cls=ImpatientCaller
    )
    turn = next(t for t in result.turns if t.heard)
    assert turn.reply_start_ms is not None  # the answer had just begun
    assert result.outcome == "hung_up_waiting"


def test_a_caller_who_heard_the_answer_and_hung_up_just_hung_up(bot):
    result, _caller, _events = run_call(
        bot, question_track(14.0), recognition_ms=400.0, caller_cls=ImpatientCaller
    )
    turn = next(t for t in result.turns if t.heard)
    assert turn.reply_start_ms is not None
    assert result.outcome == "hung_up"
