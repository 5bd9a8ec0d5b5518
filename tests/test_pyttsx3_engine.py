"""pyttsx3 with the system's espeak-ng voice, for real: audible audio of a plausible length."""

import asyncio
import threading

import numpy as np
import pytest

import voicebot.tts.pyttsx3_engine as engine_module
from voicebot.tts.base import Speech, Synthesizer
from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer


@pytest.fixture(scope="module")
def espeak() -> Pyttsx3Synthesizer:
    return Pyttsx3Synthesizer()


def test_is_a_synthesizer_with_a_japanese_voice(espeak: Pyttsx3Synthesizer) -> None:
    assert isinstance(espeak, Synthesizer)
    assert espeak.engine == "pyttsx3"
    # espeak-ng's Japanese voice (jpx/ja); the mbrola ones need data that is not installed.
    assert espeak.voice.endswith("/ja")


def test_speaks_audible_audio_of_plausible_length(espeak: Pyttsx3Synthesizer) -> None:
    speech = asyncio.run(espeak.synthesize("手数料は1通300円です。"))
    assert isinstance(speech, Speech)
    assert speech.sample_rate == espeak.sample_rate == 22050
    assert speech.samples.dtype == np.int16
    # About a dozen morae of kana (the number rewritten), a few seconds at espeak's pace.
    assert 1000 < speech.duration_ms < 10_000
    assert np.sqrt(np.mean(speech.samples.astype(np.float64) ** 2)) > 300


def test_longer_text_gives_longer_audio(espeak: Pyttsx3Synthesizer) -> None:
    async def main() -> tuple[Speech, Speech]:
        short = await espeak.synthesize("はい。")
        long = await espeak.synthesize("はい。ほかにご質問はありますか。もう一度お話しください。")
        return short, long

    short, long = asyncio.run(main())
    assert 0 < short.duration_ms < long.duration_ms


def test_all_pyttsx3_work_runs_on_one_worker_thread(
    espeak: Pyttsx3Synthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    render = engine_module._render

    def recording_render(*args):
        threads.add(threading.current_thread().name)
        return render(*args)

    monkeypatch.setattr(engine_module, "_render", recording_render)

    async def main() -> list[Speech]:
        return await asyncio.gather(*(espeak.synthesize(t) for t in ("いち", "に", "さん")))

    results = asyncio.run(main())
    assert all(len(r.samples) > 0 for r in results)
    assert len(threads) == 1 and next(iter(threads)).startswith("pyttsx3")


def test_synthesis_prints_nothing_on_stdout(capfd):
    """pyttsx3's espeak driver prints on stdout; that would corrupt `voicebot call --json`."""
    import asyncio

    from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer

    speech = asyncio.run(Pyttsx3Synthesizer().synthesize("出力の確認です。"))
    assert len(speech.samples) > 0
    assert "Audio saved" not in capfd.readouterr().out
