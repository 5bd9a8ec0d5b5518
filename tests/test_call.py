"""Whole calls on recorded caller audio: the real VAD, the real Whisper model, the dialogue.

The caller tracks are the phone-channel fixtures (Kokoro voices through 300-3400 Hz,
8 kHz, μ-law). The bot's own voice here is pyttsx3 (espeak-ng), a real synthesiser
but a fast one: rendering every reply with Kokoro costs about real time on two cores
(~30 minutes for all fixed texts), which is a start-up cost measured in bench/tts.py,
not something to repeat in every test run. Kokoro is tested on its own in test_kokoro.py.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from conftest import DATA

from voicebot import prompts
from voicebot.asr.base import RecognizerError, Transcript
from voicebot.bot import Bot
from voicebot.call import CallResult
from voicebot.clock import VirtualClock, WallClock
from voicebot.events import BotSpeechStopped, ComponentFailed, EventFanout, EventRecorder
from voicebot.recorded_call import RecordedCaller
from voicebot.tts.base import SynthesisError
from voicebot.tts.cache import split_sentences
from voicebot.wavfile import WavAudio, read_wav, write_wav

# Recognition is charged a fixed time on the virtual clock, as on a quiet 2-core machine,
# so that these calls unfold the same way however busy the test machine is.
RECOGNITION_MS = 400.0

FIXTURES = DATA / "audio" / "dev"
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def manifest() -> list[dict[str, str]]:
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def clip(utterance: str, voice: str = "jf_alpha") -> np.ndarray:
    row = next(r for r in manifest() if r["utterance"] == utterance and r["voice"] == voice)
    return read_wav(FIXTURES / row["file"]).samples


def caller_track(*parts: str | float, voice: str = "jf_alpha") -> WavAudio:
    """Utterances (str) and pauses (seconds) one after another, at 8 kHz."""
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(clip(part, voice))
        else:
            pieces.append(np.zeros(int(part * 8000), dtype=np.int16))
    return WavAudio(np.concatenate(pieces), 8000)


def run_call(
    bot: Bot, audio: WavAudio, **caller_kw
) -> tuple[CallResult, RecordedCaller, EventRecorder]:
    clock = VirtualClock(work_ms=RECOGNITION_MS)
    caller = RecordedCaller(audio, clock, **caller_kw)
    recorder = EventRecorder()
    session = bot.session(caller, clock, EventFanout(caller, recorder), now=lambda: OPEN)
    result = asyncio.run(session.run())
    return result, caller, recorder


# Whisper on a Xeon with AMX (family 6 model 167) hears jf_alpha's 納付書 as 納付賞 and
# the bot rightly confirms it; jm_kumo's is heard as 納付詳細 there and answered.
CLEAR_VOICE = "jm_kumo"


def test_answers_each_question_of_a_call(bot, faq):
    audio = caller_track(
        "納付書を再発行してもらえますか",
        2.5,
        "口座振替にしたいんですがどうすればいいですか",
        2.5,
        voice=CLEAR_VOICE,
    )
    result, caller, _events = run_call(bot, audio)
    answered = [t for t in result.turns if t.heard]
    assert [t.faq_id for t in answered] == ["payment.lost-notice", "payment.account-transfer"]
    for turn in answered:
        assert turn.action == "answer"
        assert turn.said.startswith(faq.answer_text(turn.faq_id))
        assert turn.reply_start_ms > turn.speech_end_ms
        assert turn.latency_ms == pytest.approx(turn.reply_start_ms - turn.speech_end_ms)
    assert result.outcome == "hung_up"  # the recording ended without a goodbye
    # The bot really spoke: its channel has audio after each question.
    bot_audio = np.concatenate(caller.bot_out)
    for turn in answered:
        start = int(turn.reply_start_ms * 8)
        assert np.abs(bot_audio[start : start + 8000]).max() > 1000


def test_a_turn_is_understood_off_the_event_loop(bot, monkeypatch):
    """Matching the hypotheses and rating the chosen one against the audio run in a worker
    thread: on the loop that carries every call's audio they would hold it up."""
    matcher = bot.understanding.matcher
    matcher._recent.clear()  # the shared bot has matched these words before
    threads: list[tuple[str, bool]] = []
    inner = matcher._match

    def noting(text: str, top_k: int):
        on_loop = _running_loop() is not None
        threads.append((text, on_loop))
        return inner(text, top_k)

    monkeypatch.setattr(matcher, "_match", noting)
    audio = caller_track("口座振替にしたいんですがどうすればいいですか", 2.5)
    result, _, _ = run_call(bot, audio)
    assert [t.faq_id for t in result.turns if t.heard] == ["payment.account-transfer"]
    assert threads, "nothing was matched"
    assert not [text for text, on_loop in threads if on_loop], threads


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def test_goodbye_completes_the_call(bot):
    audio = caller_track("納付書を再発行してもらえますか", 2.0, "以上です", 3.0)
    result, _, _ = run_call(bot, audio)
    assert result.outcome == "completed"
    assert result.turns[-1].action == "goodbye"


def test_a_silent_line_is_asked_again_handed_over_then_ended(bot):
    """The caller goes quiet after the answer and stays on the line; staff cannot be
    reached. The bot asks again, tries staff, and on the third silence says goodbye and
    hangs up instead of holding the line until the longest call."""
    audio = caller_track("納付書を再発行してもらえますか", 120.0)
    result, caller, _ = run_call(bot, audio, transfer_ok=False)
    assert result.outcome == "completed"
    assert caller.transferred_to is None
    silences = [t.action for t in result.turns if t.heard == ""]
    assert silences == ["reprompt", "transfer", "silent_line"]
    assert result.turns[-1].said == prompts.SILENT_LINE + prompts.GOODBYE
    assert result.duration_ms < 100_000  # well before the caller's two silent minutes end


def test_asking_for_staff_transfers_with_what_was_said(bot):
    audio = caller_track("納付書を再発行してもらえますか", 2.0, "担当の方と直接話したいです", 3.0)
    result, caller, _ = run_call(bot, audio)
    assert result.outcome == "transferred"
    handover = caller.transferred_to
    assert handover.reason == "caller_request"
    assert handover.turns[0].faq_id == "payment.lost-notice"
    # What the recogniser heard, kanji and all (Whisper writes it differently on different
    # CPUs: 「納付書を再発行」 on a Xeon, 「納付賞税、運行」 on an AMD EPYC Zen 3, 「ノーフショー
    # 再発行してもらいますか」 on a Zen 5), not the FAQ's words.
    heard = handover.turns[0].heard
    assert heard and heard == result.turns[0].heard
    faq = bot.understanding.faq
    entry = faq["payment.lost-notice"]
    assert heard not in {entry.title, *entry.questions}


def test_dtmf_zero_transfers(bot):
    audio = caller_track(3.0)
    result, _, _ = run_call(bot, audio, dtmf=[(500.0, "0")])
    assert result.outcome == "transferred"
    assert result.turns[0].heard == "[DTMF 0]"


def test_barge_in_stops_bot_audio_within_100_ms(bot):
    """The caller talks over the greeting: the bot must fall silent almost at once.

    Measured exactly: how far into the greeting the bot got (its output matches the
    greeting clip up to that sample) against when the caller's speech began.
    """
    # 1.7 s in, the greeting is mid-word (at 1.0 s it happens to pause between words).
    audio = caller_track(1.7, "口座振替にしたいんですがどうすればいいですか", 2.5)
    result, caller, events = run_call(bot, audio, no_wait=True)
    assert [e for e in events.of_type(BotSpeechStopped) if e.barged_in], "no barge-in"
    caller_audio = np.concatenate(caller.caller_out)
    bot_audio = np.concatenate(caller.bot_out)  # sample i is played at 20 ms + i / 8 kHz
    greeting = bot.voice.cached(prompts.GREETING, 8000)
    differs = int(np.nonzero(bot_audio[: len(greeting)] != greeting[: len(bot_audio)])[0][0])
    # The last sound of the greeting that was played (silent samples match either way).
    last_sound = int(np.nonzero(greeting[:differs])[0][-1])
    onset = int(np.argmax(np.abs(caller_audio) > 50))  # the caller's speech begins
    delay_ms = 20 + last_sound / 8 - onset / 8
    assert 0 < delay_ms <= 100, f"bot kept talking {delay_ms:.0f} ms into the caller"
    assert result.turns[0].faq_id == "payment.account-transfer"


def stretched_pause(utterance: str, at_s: float, pause_s: float) -> WavAudio:
    """The fixture with its pause near ``at_s`` made ``pause_s`` long (Kokoro's own
    pauses between clauses are shorter than many callers')."""
    samples = clip(utterance)
    energy = np.abs(samples.astype(np.int32))
    i = int(at_s * 8000)
    while energy[i : i + 160].max() > 300:  # walk into the pause
        i += 80
    j = i
    while energy[j : j + 160].max() <= 300:
        j += 80
    pause = np.zeros(int(pause_s * 8000), dtype=np.int16)
    return WavAudio(
        np.concatenate([samples[:i], pause, samples[j:], np.zeros(20000, np.int16)]), 8000
    )


def test_a_long_pause_mid_sentence_does_not_split_the_question(bot):
    """「古い家を取り壊したんですけど……何か連絡は必要ですか」 with a one-second pause:
    the first half sounds unfinished, so the bot holds it; when the wait runs out it
    starts to reply, the caller goes on over it, and the two halves are one question."""
    audio = stretched_pause("古い家を取り壊したんですけど何か連絡は必要ですか", 2.0, 1.0)
    result, _, _ = run_call(bot, audio)
    heard = [t for t in result.turns if t.heard]
    assert len(heard) == 1, [t.heard for t in heard]
    assert "必要" in heard[0].heard and "壊" in heard[0].heard
    assert heard[0].faq_id == "kotei.demolished"


class TimedRecognizer:
    """The real recogniser, noting when each recognition was asked for and when one was
    dropped (on a live clock only: the virtual clock never drops running work).

    ``delay_s`` holds each recognition back that long before it starts: on a fast CPU a
    speculation on two seconds of speech can finish inside a 0.3 s pause, leaving
    nothing running to drop when the caller goes on."""

    def __init__(self, inner, delay_s: float = 0.0) -> None:
        self.inner, self.name, self.sample_rate = inner, inner.name, inner.sample_rate
        self.delay_s = delay_s
        self.asked: list[tuple[float, int]] = []  # (monotonic s, samples)
        self.dropped: list[tuple[float, int]] = []

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        self.asked.append((time.monotonic(), len(samples)))
        try:
            await asyncio.sleep(self.delay_s)
            return await self.inner.transcribe(samples)
        except asyncio.CancelledError:
            self.dropped.append((time.monotonic(), len(samples)))
            raise


def test_a_speculative_recognition_stops_when_the_caller_goes_on(settings, bot):
    """A pause mid-question starts recognition early; when the caller speaks again that
    recognition is dropped at once (its decodings skipped), not at the end of the turn."""
    timed = TimedRecognizer(bot.recognizer, delay_s=0.4)  # longer than the pause
    live = Bot(
        settings, understanding=bot.understanding, recognizer=timed, synthesizer=bot.synthesizer
    )
    live.voice = bot.voice
    audio = stretched_pause("古い家を取り壊したんですけど何か連絡は必要ですか", 2.0, 0.3)
    clock = WallClock()
    caller = RecordedCaller(audio, clock)
    session = live.session(caller, clock, EventFanout(caller, EventRecorder()), now=lambda: OPEN)
    result = asyncio.run(session.run())
    heard = [t for t in result.turns if t.heard]
    assert heard and heard[0].faq_id == "kotei.demolished", [t.heard for t in heard]
    whole = max(n for _, n in timed.asked)
    first_half = [(t, n) for t, n in timed.dropped if n < whole * 0.75]
    assert first_half, (timed.asked, timed.dropped)
    final_asked = next(t for t, n in timed.asked if n == whole)
    # the rest of the question (「何か連絡は必要ですか」) lasts well over a second
    assert final_asked - first_half[0][0] > 0.8, (timed.asked, timed.dropped)


class FailingRecognizer:
    """Fault injection: the real recogniser cannot be made to fail on demand."""

    name = "failing"
    sample_rate = 16000

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        raise RecognizerError("simulated recogniser crash")


def test_recogniser_failure_apologises_and_transfers(settings, bot):
    broken = Bot(
        settings,
        understanding=bot.understanding,
        recognizer=FailingRecognizer(),
        synthesizer=bot.synthesizer,
    )
    broken.voice = bot.voice
    audio = caller_track("納付書を再発行してもらえますか", 3.0)
    result, caller, events = run_call(broken, audio)
    assert result.outcome == "transferred"
    assert caller.transferred_to.reason == "failure"
    failures = events.of_type(ComponentFailed)
    assert failures and failures[0].component == "recognizer"
    assert result.turns[-1].said.startswith("申し訳ありません")


class BreaksOnAnswers:
    """Fault injection: a synthesiser that fails for FAQ answers but not for prompts."""

    def __init__(self, inner, faq):
        self.inner = inner
        self.engine, self.voice, self.sample_rate = "breaks", "x", inner.sample_rate
        # Uncached answers are synthesised sentence by sentence on a call: break the first.
        texts = [faq.answer_text(e) for e in faq]
        self.answers = {*texts, *(split_sentences(t)[0] for t in texts)}

    async def synthesize(self, text: str):
        if text in self.answers:
            raise SynthesisError("simulated synthesiser crash")
        return await self.inner.synthesize(text)


def test_synthesiser_failure_apologises_and_transfers(settings, bot, faq, tmp_path):
    s = settings.model_copy(deep=True)
    s.tts.cache_dir = tmp_path
    broken = Bot(
        s,
        understanding=bot.understanding,
        recognizer=bot.recognizer,
        synthesizer=BreaksOnAnswers(bot.synthesizer, faq),
    )
    audio = caller_track("納付書を再発行してもらえますか", 3.0)
    result, _caller, events = run_call(broken, audio)
    assert result.outcome == "transferred"
    assert [e.component for e in events.of_type(ComponentFailed)] == ["synthesizer"]


def test_cli_call_json_and_stereo_output(tmp_path, settings):
    track = caller_track("納付書を再発行してもらえますか", 2.5)
    wav = tmp_path / "caller.wav"
    write_wav(wav, track.samples, track.sample_rate)
    out = tmp_path / "conversation.wav"
    env = {
        **__import__("os").environ,
        "VOICEBOT_TTS__ENGINE": "pyttsx3",
        "VOICEBOT_TTS__CACHE_DIR": str(settings.tts.cache_dir),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "call",
            str(wav),
            "--json",
            "--out",
            str(out),
            "--at",
            "2026-11-24T10:00",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] in ("hung_up", "completed")
    turn = next(t for t in result["turns"] if t["heard"])
    for key in (
        "heard",
        "faq_id",
        "score",
        "action",
        "said",
        "speech_end_ms",
        "reply_start_ms",
        "latency_ms",
    ):
        assert key in turn
    assert turn["faq_id"] == "payment.lost-notice"
    raw = Path(out).read_bytes()  # the reader downmixes, so check the header itself
    assert raw[:4] == b"RIFF" and int.from_bytes(raw[22:24], "little") == 2


def test_cli_call_rejects_a_malformed_wav(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    proc = subprocess.run(
        [sys.executable, "-m", "commands.cli", "call", str(bad), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "bad.wav" in proc.stderr and "error" in proc.stderr


class SilentLine:
    """A live caller who stays on the line and says nothing (frames at the real pace).

    Stands in for a SIP/WebRTC leg so that the switchboard can be tested without a
    network; the real transports are tested against real peers in test_sip*/test_webrtc*.
    """

    name = "test-line"
    sample_rate = 8000

    def __init__(self) -> None:
        self.handover = None
        self.hung_up = False
        self.bot_audio: list[np.ndarray] = []
        self._t = 0.0

    async def receive(self):
        from voicebot.frames import AudioFrame

        if self.hung_up or self.handover is not None:
            return None
        await asyncio.sleep(0.02)
        self._t += 20.0
        return AudioFrame.from_samples(np.zeros(160, dtype=np.int16), 8000, self._t)

    async def send(self, frame) -> None:
        self.bot_audio.append(frame.samples)

    async def transfer(self, handover) -> None:
        self.handover = handover

    async def hangup(self) -> None:
        self.hung_up = True


def test_shutdown_tells_the_caller_and_hands_over(bot):
    """Draining the switchboard never cuts a caller off: they hear why and go to staff."""
    from voicebot.events import BotSpeechStarted
    from voicebot.switchboard import Switchboard, SwitchboardClosed

    recorder = EventRecorder()

    async def scenario():
        board = Switchboard(bot, recorder, now=lambda: OPEN)
        line = SilentLine()
        call = asyncio.create_task(board.handle(line, caller="test"))
        async with asyncio.timeout(60):
            while not recorder.of_type(BotSpeechStarted):  # the greeting has begun
                assert not call.done(), call  # a failed call shows its exception here
                await asyncio.sleep(0.02)
        await board.drain(grace_s=0.2)
        result = await call
        with pytest.raises(SwitchboardClosed):
            await board.handle(SilentLine())
        return result, line

    result, line = asyncio.run(scenario())
    assert result.outcome == "transferred"
    assert line.handover.reason == "shutdown"
    kinds = [e.kind for e in recorder.of_type(BotSpeechStarted)]
    assert kinds[0] == "greeting" and "shutdown" in kinds
    said = [e.text for e in recorder.of_type(BotSpeechStarted) if e.kind == "shutdown"]
    assert said[0] == prompts.SHUTDOWN + prompts.SHUTDOWN_TRANSFER
    assert np.abs(np.concatenate(line.bot_audio)).max() > 1000  # it was spoken, not skipped


def test_published_faq_reaches_new_calls(settings, bot, faq):
    """reload_faq swaps the FAQ for new calls after its audio is rendered."""
    import dataclasses

    entry = faq["payment.lost-notice"]
    new_answer = "新しい納付書を郵送いたします。お名前をお知らせください。"
    changed = entry.model_copy(update={"answer": new_answer})
    new_faq = dataclasses.replace(
        faq, entries=[changed if e.id == entry.id else e for e in faq.entries]
    )
    fresh = Bot(settings, understanding=bot.understanding, recognizer=bot.recognizer)
    asyncio.run(fresh.reload_faq(new_faq))
    assert fresh.understanding.faq.answer_text("payment.lost-notice") == changed.answer
    assert fresh.speech_cache.get(changed.answer) is not None
    audio = caller_track("納付書を再発行してもらえますか", 2.5, voice=CLEAR_VOICE)
    result, _, _ = run_call(fresh, audio)
    assert result.turns[0].said.startswith(changed.answer)


class CutLine(RecordedCaller):
    """A caller whose line is cut by a failure on our side 1.5 s into the bot's answer
    (as when the SIP worker holding the call dies)."""

    failure: str | None = None

    async def receive(self):
        answer_started = self._bot_speaking and self._last_question_end is not None
        if answer_started and self._t - self._last_question_end > 1500:
            self.failure = "SIP worker stopped"
            return None
        return await super().receive()


def test_a_line_cut_on_our_side_is_abandoned_not_hung_up(bot):
    clock = VirtualClock(work_ms=RECOGNITION_MS)
    caller = CutLine(caller_track("納付書を再発行してもらえますか", 4.0), clock)
    recorder = EventRecorder()
    session = bot.session(caller, clock, EventFanout(caller, recorder), now=lambda: OPEN)
    result = asyncio.run(session.run())
    assert result.outcome == "abandoned"
    failed = [e for e in recorder.events if isinstance(e, ComponentFailed)]
    assert [(e.component, e.error) for e in failed] == [("transport", "SIP worker stopped")]
    assert recorder.events[-1].name == "call_ended" and recorder.events[-1].outcome == "abandoned"


def test_a_finished_call_gives_its_vad_to_the_next_call(bot):
    from voicebot import vad as vad_module

    clock = VirtualClock(work_ms=RECOGNITION_MS)
    caller = RecordedCaller(caller_track("以上です", 2.0), clock)
    session = bot.session(caller, clock, caller, now=lambda: OPEN)
    vad = session.turn_taking.vad
    asyncio.run(session.run())
    assert any(v is vad for v in vad_module._pool[8000])
    following = bot.session(RecordedCaller(caller_track(1.0), clock), clock, caller)
    assert following.turn_taking.vad is vad
