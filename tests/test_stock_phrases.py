"""Subtitle stock phrases Whisper writes on noise are treated as unheard."""

from __future__ import annotations

import pytest

from voicebot.asr.stock_phrases import is_stock_phrase
from voicebot.asr.whisper import WhisperRecognizer


@pytest.mark.parametrize(
    "text",
    [
        "ご視聴ありがとうございました",
        "ご視聴ありがとうございました。ご視聴ありがとうございました。",
        "最後までご視聴いただきありがとうございました!",
        "チャンネル登録よろしくお願いします",
        "高評価とチャンネル登録をお願いします。",
    ],
)
def test_stock_phrases(text):
    assert is_stock_phrase(text)


@pytest.mark.parametrize(
    "text",
    [
        "ありがとうございました",  # a caller's goodbye
        "ご視聴ありがとうございました、それと住民税の納期は",  # something of the caller's too
        "視聴覚の障害があるので窓口に行けないんですが",
        "",
        "。",
    ],
)
def test_what_a_caller_says_is_no_stock_phrase(text):
    assert not is_stock_phrase(text)


def test_a_hypothesis_of_stock_phrases_is_dropped_like_an_echo():
    """Left in, 「ご視聴ありがとうございました」 on a rustle is the caller's goodbye and
    the bot hangs up; dropped, the turn is heard as nothing."""
    hypotheses = [
        ("ご視聴ありがとうございました。", 0.6, (1, 2)),
        ("ありがとうございました", 0.5, (3,)),
    ]
    kept = WhisperRecognizer._not_echoes(hypotheses, None)
    assert [text for text, _, _ in kept] == ["ありがとうございました"]


def test_a_long_run_is_judged_without_trying_every_split():
    """A decoding stuck repeating a stock phrase, cut off mid-phrase: no match, and its
    alternatives never match the same characters, so no split is tried twice (two that
    did took seconds on 400 characters)."""
    run = "ご視聴いただきありがとうございました" * 10
    assert is_stock_phrase(run)
    assert not is_stock_phrase(run + "ご視聴いただきありがとうござ")
    assert not is_stock_phrase(run * 3)  # longer than any such run: not looked at
