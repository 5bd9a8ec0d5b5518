"""Rendering every fixed utterance before callers need it: the order (likely answers first),
`voicebot prerender`, the progress bar's time left, and the service's estimate.

Speech comes from espeak-ng through pyttsx3, a real engine fast enough to render a whole
FAQ file in seconds; the speed of Kokoro is measured by bench/tts.py, not here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faq.store import load_faq
from voicebot import prompts
from voicebot.bot import Bot, make_recognizer
from voicebot.config import Settings
from voicebot.tts.base import Speech
from voicebot.tts.cache import (
    SpeechCache,
    answer_order,
    fixed_utterances,
    format_duration,
    text_progress_bar,
)
from voicebot.tts.pyttsx3_engine import Pyttsx3Synthesizer
from voicebot.understanding import Understanding

FAQ_DATA = Path(__file__).resolve().parent.parent / "faq" / "data"
VOICEBOT = [sys.executable, "-m", "commands.cli"]


@pytest.fixture
def small_faq_dir(tmp_path: Path) -> Path:
    """Two categories of the shipped FAQ (7 entries): quick to render with espeak."""
    folder = tmp_path / "faq"
    folder.mkdir()
    for name in ("keiji.yaml", "redirect.yaml"):
        shutil.copy(FAQ_DATA / name, folder / name)
    return folder


def prerender(faq_dir: Path, cache_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VOICEBOT_TTS__ENGINE": "pyttsx3",
        "VOICEBOT_TTS__CACHE_DIR": str(cache_dir),
    }
    return subprocess.run(
        [*VOICEBOT, "prerender", "--faq-dir", str(faq_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_answers_come_first_each_category_s_opening_entry_before_the_rest(faq) -> None:
    order = answer_order(faq)
    assert sorted(e.id for e in order) == sorted(e.id for e in faq)
    categories = list(dict.fromkeys(faq.categories[e.id] for e in faq))
    openers = [next(e for e in faq if faq.categories[e.id] == c) for c in categories]
    assert order[: len(categories)] == openers  # e.g. the overview of each tax
    texts = fixed_utterances(faq)
    first_confirmation = texts.index(prompts.CONFIRM_TOPIC.format(title=order[0].title))
    last_answer = max(texts.index(faq.answer_text(e)) for e in faq)
    assert last_answer < first_confirmation
    answers = [t for t in texts if t in {faq.answer_text(e) for e in faq}]
    assert answers == [faq.answer_text(e) for e in order]


def test_progress_bar_shows_the_time_left_at_the_pace_so_far(tmp_path: Path) -> None:
    now = [100.0]
    out = (tmp_path / "bar.txt").open("w+", encoding="utf-8", newline="")
    report = text_progress_bar(out, width=10, clock=lambda: now[0])
    report(1, 5, "はい。")  # the first text: no pace yet
    now[0] += 30.0
    report(2, 5, "いいえ。")  # 30 s a text, 3 left
    now[0] += 10.0
    report(5, 5, "終わり。")
    out.seek(0)
    lines = out.read().split("\r")[1:]
    assert "ETA" not in lines[0]
    assert "[####......] 2/5 ETA 1m30s いいえ。" in lines[1]
    assert "ETA" not in lines[2] and lines[2].endswith("\n")
    assert [format_duration(s) for s in (0.4, 45, 192, 3900)] == ["0s", "45s", "3m12s", "1h05m"]


def test_prerender_command_fills_the_cache_then_renders_nothing(
    small_faq_dir: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "speech"
    expected = len(fixed_utterances(load_faq(small_faq_dir)))
    first = prerender(small_faq_dir, cache_dir)
    assert first.returncode == 0, first.stderr
    files = sorted(cache_dir.rglob("*.wav"))
    assert len(files) == expected
    assert f"{expected} utterances, {expected} rendered now, 0 already cached" in first.stdout
    written = {f: f.stat().st_mtime_ns for f in files}

    second = prerender(small_faq_dir, cache_dir)
    assert second.returncode == 0, second.stderr
    assert f"0 rendered now, {expected} already cached" in second.stdout
    assert {f: f.stat().st_mtime_ns for f in cache_dir.rglob("*.wav")} == written


def test_prerender_help_says_why_and_a_broken_faq_exits_with_2(tmp_path: Path) -> None:
    shown = subprocess.run([*VOICEBOT, "prerender", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert "no caller waits" in shown.stdout and "before the line is opened" in shown.stdout
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "bad.yaml").write_text("category: x\nentries: [1]\n", encoding="utf-8")
    broken = prerender(tmp_path / "faq", tmp_path / "speech")
    assert broken.returncode == 2
    assert "error" in broken.stderr
    assert not list((tmp_path / "speech").rglob("*.wav"))


class CountingSynthesizer:
    """The real espeak voice, counting what it is asked to say."""

    def __init__(self) -> None:
        self.inner = Pyttsx3Synthesizer()
        self.engine, self.voice = self.inner.engine, self.inner.voice
        self.sample_rate = self.inner.sample_rate
        self.asked: list[str] = []

    async def synthesize(self, text: str) -> Speech:
        self.asked.append(text)
        return await self.inner.synthesize(text)


def test_prerender_with_two_at_once_renders_each_text_once(tmp_path: Path) -> None:
    synthesizer = CountingSynthesizer()
    cache = SpeechCache(synthesizer, tmp_path)
    texts = ["はい。", "いいえ。", "少々お待ちください。", "はい。", "お電話ありがとうございます。"]
    seen: list[int] = []
    result = asyncio.run(cache.prerender(texts, lambda done, *_: seen.append(done), parallel=2))
    assert (result.total, result.rendered, result.cached) == (4, 4, 0)
    assert sorted(synthesizer.asked) == sorted(set(texts))
    assert seen == [1, 2, 3, 4]
    assert cache.uncached(texts) == []


def test_service_start_logs_when_every_answer_will_be_ready(
    small_faq_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings()
    settings.tts.engine = "pyttsx3"
    settings.tts.cache_dir = tmp_path / "speech"
    settings.faq.directory = small_faq_dir
    understanding = Understanding.load(settings)
    recognizer = make_recognizer(settings, understanding.faq)

    async def start() -> tuple[Bot, int]:
        bot = Bot(settings, understanding=understanding, recognizer=recognizer)
        await bot.prepare(background=True)
        assert bot.rendering is not None
        return bot, (await bot.rendering).rendered

    caplog.set_level(logging.INFO, logger="voicebot.bot")
    _, rendered = asyncio.run(start())
    rest = len(fixed_utterances(understanding.faq)) - len(
        fixed_utterances(understanding.faq, per_entry=False)
    )
    assert rendered == rest
    assert f"rendering {rest} answers and confirmations in the background" in caplog.text
    assert "every answer ready in about" in caplog.text

    caplog.clear()
    _, rendered = asyncio.run(start())
    assert rendered == 0
    assert f"all {rest} answers and confirmations are rendered" in caplog.text
