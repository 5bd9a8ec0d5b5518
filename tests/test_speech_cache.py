"""The on-disk speech cache, with real engines: espeak-ng (fast) for the bookkeeping and
Kokoro for the sentence-by-sentence stream."""

import asyncio
import io
import logging
import string
from pathlib import Path

import numpy as np
import pytest

from voicebot import prompts
from voicebot.tts.base import Speech
from voicebot.tts.cache import (
    SpeechCache,
    default_cache_dir,
    fixed_utterances,
    progress_reporter,
    split_sentences,
    text_progress_bar,
    text_progress_lines,
)
from voicebot.tts.kokoro import KokoroSynthesizer
from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer


class CountingSynthesizer:
    """A real synthesiser that also counts what it was asked to say."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.engine, self.voice, self.sample_rate = inner.engine, inner.voice, inner.sample_rate
        self.calls: list[str] = []

    async def synthesize(self, text: str) -> Speech:
        self.calls.append(text)
        return await self.inner.synthesize(text)


@pytest.fixture(scope="module")
def espeak() -> Pyttsx3Synthesizer:
    return Pyttsx3Synthesizer()


@pytest.fixture
def counting(espeak: Pyttsx3Synthesizer) -> CountingSynthesizer:
    return CountingSynthesizer(espeak)


@pytest.fixture
def cache(counting: CountingSynthesizer, tmp_path: Path) -> SpeechCache:
    return SpeechCache(counting, tmp_path / "speech")


def test_default_directory_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "speech"
    monkeypatch.delenv("VOICEBOT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "taxline-voicebot" / "speech"


def test_key_changes_with_everything_that_changes_the_audio(
    cache: SpeechCache, counting: CountingSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = cache.key("はい。")
    assert cache.key("はい。") == base and len(base) == 64
    assert cache.key("いいえ。") != base
    monkeypatch.setattr(counting, "voice", "other")
    assert cache.key("はい。") != base
    monkeypatch.undo()
    monkeypatch.setattr(counting, "sample_rate", 16000)
    assert cache.key("はい。") != base
    monkeypatch.undo()
    monkeypatch.setattr("voicebot.tts.cache.SPOKEN_TEXT_VERSION", 999)
    assert cache.key("はい。") != base


def test_render_synthesises_once_then_plays_from_disk(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    text = "ほかにご質問はありますか。"
    assert cache.get(text) is None
    first = asyncio.run(cache.render(text))
    second = asyncio.run(cache.render(text))
    assert counting.calls == [text]
    assert np.array_equal(first.samples, second.samples)
    assert second.sample_rate == first.sample_rate == counting.sample_rate
    stored = cache.path(text)
    assert stored.is_file() and stored.read_bytes()[:4] == b"RIFF"
    assert list(stored.parent.glob("*.tmp")) == []  # written under a temporary name, renamed


def test_a_new_cache_on_the_same_directory_finds_the_audio(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    asyncio.run(cache.render("はい。"))
    again = SpeechCache(counting, cache.directory)
    assert again.get("はい。") is not None


def test_corrupt_file_is_ignored_with_a_warning_and_rendered_again(
    cache: SpeechCache, counting: CountingSynthesizer, caplog: pytest.LogCaptureFixture
) -> None:
    text = "失礼いたします。"
    asyncio.run(cache.render(text))
    cache.path(text).write_bytes(b"RIFF\x00\x00")  # truncated by a crash or a full disk
    with caplog.at_level(logging.WARNING, logger="voicebot.tts.cache"):
        speech = asyncio.run(cache.render(text))
    assert "ignoring unreadable" in caplog.text
    assert len(speech.samples) > 0
    assert counting.calls == [text, text]
    assert cache.get(text) is not None


def test_concurrent_renders_of_the_same_text_share_one_synthesis(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    async def main() -> list[Speech]:
        return await asyncio.gather(*(cache.render("少々お待ちください。") for _ in range(3)))

    results = asyncio.run(main())
    assert counting.calls == ["少々お待ちください。"]
    assert all(np.array_equal(r.samples, results[0].samples) for r in results)


def test_prerender_reports_progress_and_skips_what_is_cached(
    cache: SpeechCache, counting: CountingSynthesizer
) -> None:
    asyncio.run(cache.render("はい。"))
    seen: list[tuple[int, int, str]] = []
    texts = ["はい。", "いいえ。", "もう一度申し上げます。", "いいえ。"]
    result = asyncio.run(cache.prerender(texts, lambda *a: seen.append(a)))
    assert (result.total, result.cached, result.rendered) == (3, 1, 2)
    assert seen == [
        (1, 3, "はい。"),
        (2, 3, "いいえ。"),
        (3, 3, "もう一度申し上げます。"),
    ]
    assert counting.calls == ["はい。", "いいえ。", "もう一度申し上げます。"]


def test_text_progress_bar_draws_one_line(tmp_path: Path) -> None:
    out = (tmp_path / "bar.txt").open("w+", encoding="utf-8")
    report = text_progress_bar(out, width=10)
    report(1, 4, "はい。")
    report(4, 4, "いいえ。")
    out.seek(0)
    drawn = out.read()
    assert "[##........] 1/4 はい。" in drawn
    assert drawn.endswith("[##########] 4/4 いいえ。\x1b[K\n")


def test_split_sentences_keeps_punctuation_and_quotes_with_their_sentence() -> None:
    assert split_sentences("はい。「担当者」とおっしゃるか、0番を押してください。どうぞ！") == [
        "はい。",
        "「担当者」とおっしゃるか、0番を押してください。",
        "どうぞ！",
    ]
    # A quoted sentence belongs to the sentence that quotes it.
    assert split_sentences("「はい。」と言ってください。") == ["「はい。」と言ってください。"]
    assert split_sentences("終わりの句点なし") == ["終わりの句点なし"]


def test_fixed_utterances_cover_everything_the_bot_says_verbatim(faq) -> None:
    texts = fixed_utterances(faq)
    assert len(texts) == len(set(texts))
    assert not [t for t in texts if "{" in t or "}" in t]  # every placeholder filled
    for name, value in vars(prompts).items():
        if name.isupper() and isinstance(value, str):
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f}
            if not fields:
                assert value in texts, name
    assert prompts.REPEAT_PREFIX in texts
    assert prompts.OUT_OF_HOURS.format(office_hours=faq.city.office_hours) in texts
    assert prompts.CONFIRM_HOW in texts
    for entry in faq:
        assert prompts.CONFIRM_TOPIC.format(title=entry.title) in texts
        assert faq.answer_text(entry) in texts


@pytest.fixture(scope="module")
def kokoro() -> KokoroSynthesizer:
    return KokoroSynthesizer()


def test_stream_yields_sentence_by_sentence_then_caches_the_whole(
    kokoro: KokoroSynthesizer, tmp_path: Path
) -> None:
    counting = CountingSynthesizer(kokoro)
    cache = SpeechCache(counting, tmp_path)
    text = "はい。少々お待ちください。"

    async def collect() -> list[Speech]:
        return [speech async for speech in cache.stream(text)]

    pieces = asyncio.run(collect())
    assert counting.calls == ["はい。", "少々お待ちください。"]
    assert len(pieces) == 2 and all(len(p.samples) > 0 for p in pieces)
    # The first piece ends with the pause the engine leaves between sentences.
    pause = round(cache.sentence_pause_ms * kokoro.sample_rate / 1000)
    assert not pieces[0].samples[-pause:].any()

    replay = asyncio.run(collect())
    assert len(replay) == 1 and counting.calls == ["はい。", "少々お待ちください。"]
    assert np.array_equal(replay[0].samples, np.concatenate([p.samples for p in pieces]))


def test_progress_lines_in_a_log_come_at_intervals_with_the_time_left(tmp_path: Path) -> None:
    now = [0.0]
    out = (tmp_path / "log.txt").open("w+", encoding="utf-8")
    report = text_progress_lines(out, every_s=30.0, clock=lambda: now[0])
    for done in range(1, 11):  # 10 s a text
        now[0] += 10.0
        report(done, 10, "はい。")
    out.seek(0)
    assert out.read().splitlines() == [
        "speech ready: 4/10 (40 %), about 1m00s left",
        "speech ready: 7/10 (70 %), about 30s left",
        "speech ready: 10/10 (100 %)",
    ]


def test_progress_lines_say_nothing_when_the_cache_was_warm(tmp_path: Path) -> None:
    out = (tmp_path / "log.txt").open("w+", encoding="utf-8")
    report = text_progress_lines(out, every_s=30.0, clock=lambda: 5.0)
    for done in range(1, 301):
        report(done, 300, "はい。")
    out.seek(0)
    assert out.read() == ""


def test_a_terminal_gets_the_bar_and_a_log_gets_lines(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log_file = Terminal(), io.StringIO()
    progress_reporter(terminal)(1, 2, "はい。")
    progress_reporter(log_file)(1, 2, "はい。")
    assert terminal.getvalue().startswith("\r[")
    assert log_file.getvalue() == ""  # the first line comes after a while, not at once
