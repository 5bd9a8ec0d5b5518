"""Phrases Whisper writes on noise from its subtitle training, which no caller says.

On a rustle, a cough or a click that the voice detector let through, Whisper often
writes the closing line of a video (「ご視聴ありがとうございました」) or a plea to
subscribe: its training audio was full of them. On a tax line the first reads as the
caller's goodbye (the call would end) and the others as questions. A hypothesis made of
nothing but such phrases reports no speech, and counts as unheard.
"""

from __future__ import annotations

import re

# Alternatives that never match the same text, so that a long run of them (a decoding
# stuck repeating one) is matched in one pass, not tried every way it could be split.
_PHRASE = (
    r"(?:最後まで)?(?:ご視聴|ご覧)(?:いただき|頂き)?(?:誠に|本当に)?ありがとうございま(?:した|す)"
    r"|チャンネル登録(?:を|も)?(?:よろしく)?お願い(?:します|いたします)"
    r"|高評価(?:を|と)?(?:チャンネル登録)?(?:を)?(?:よろしく)?お願い(?:します|いたします)"
)
_STOCK = re.compile(rf"(?:{_PHRASE})+")
_IGNORED = re.compile(r"[\s、。,.!?！？…・]+")
# Longer than any run of them a decoding leaves after its repetitions are dropped.
MAX_CHARS = 200


def is_stock_phrase(text: str) -> bool:
    """Whether ``text`` is nothing but subtitle stock phrases (punctuation aside)."""
    bare = _IGNORED.sub("", text)
    return 0 < len(bare) <= MAX_CHARS and _STOCK.fullmatch(bare) is not None
