"""A turn's recognition is finished only with its understanding prepared, off the call loop."""

from __future__ import annotations

import asyncio
import threading
import time

from conftest import DATA

from voicebot.caller_audio import CallerAudio
from voicebot.clock import WallClock
from voicebot.endpointing import SpeechEnd
from voicebot.recognition_schedule import RecognitionSchedule
from voicebot.wavfile import read_wav

PREPARE_S = 0.3


def test_the_understanding_is_prepared_in_the_job_while_the_loop_goes_on(bot):
    """The real recogniser hears a fixture question; preparing its understanding (made
    slow here) runs in a worker thread inside the recognition's job: the job is finished
    only after it, and the call loop keeps turning meanwhile (frames, the bot's audio)."""
    clip = read_wav(DATA / "audio" / "dev" / "jf_alpha" / "071.wav")
    audio = CallerAudio(clip.sample_rate, bot.recognizer.sample_rate, 60_000, 200, 200)
    audio.remember(0.0, clip.samples)
    duration_ms = 1000.0 * len(clip.samples) / clip.sample_rate
    prepared: list[tuple[int, str]] = []

    def prepare(transcript) -> None:
        prepared.append((threading.get_ident(), transcript.text))
        time.sleep(PREPARE_S)

    async def scenario():
        schedule = RecognitionSchedule(bot.recognizer, WallClock(), audio, prepare=prepare)
        ticks = 0

        async def frames() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(frames())
        await schedule.recognise(0.0, SpeechEnd(duration_ms, 0.0, duration_ms))
        while (finished := schedule.take_finished()) is None:
            await asyncio.sleep(0.005)
        ticks_at_end = ticks
        ticking.cancel()
        return finished, ticks_at_end, threading.get_ident()

    (job, _end, speculative), ticks, loop_thread = asyncio.run(scenario())
    transcript = job.result()
    assert not speculative and "窓口" in transcript.text
    assert prepared == [(prepared[0][0], transcript.text)] and prepared[0][0] != loop_thread
    assert ticks >= PREPARE_S / 0.01 / 2  # the loop turned all through the preparation


def test_a_failing_preparation_still_gives_the_transcript(bot):
    """The dialogue does the same work again and reports what fails: the turn goes on."""
    clip = read_wav(DATA / "audio" / "dev" / "jf_alpha" / "071.wav")
    audio = CallerAudio(clip.sample_rate, bot.recognizer.sample_rate, 60_000, 200, 200)
    audio.remember(0.0, clip.samples)
    duration_ms = 1000.0 * len(clip.samples) / clip.sample_rate

    def prepare(_transcript) -> None:
        raise RuntimeError("matcher unavailable")

    async def scenario():
        schedule = RecognitionSchedule(bot.recognizer, WallClock(), audio, prepare=prepare)
        await schedule.recognise(0.0, SpeechEnd(duration_ms, 0.0, duration_ms))
        while (finished := schedule.take_finished()) is None:
            await asyncio.sleep(0.005)
        return finished[0].result()

    assert "窓口" in asyncio.run(scenario()).text
