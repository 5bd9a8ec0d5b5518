"""Phrases Whisper writes on noise from its subtitle training, which no caller says.

On a rustle, a cough or a click that the voice detector let through, Whisper often
writes the closing line of a video (「ご視聴ありがとうございました」) or a plea to
subscribe: its training audio was full of them. On a tax line the first reads as the
caller's goodbye (the call would end) and the others as questions. A hypothesis made of
nothing but such phrases reports no speech, and counts as unheard.
"""

from __future__ import annotations

import re

_PHRASE = (
    r"(?:最後まで)?ご視聴(?:いただき|頂き)?(?:誠に|本当に)?ありがとうございま(?:した|す)"
    r"|チャンネル登録(?:を|も)?(?:よろしく)?お願い(?:します|いたします)"
    r"|高評価(?:を|と)?(?:チャンネル登録)?(?:を)?(?:よろしく)?お願い(?:します|いたします)"
    r"|(?:ご覧|ご視聴)いただきありがとうございま(?:した|す)"
)
_STOCK = re.compile(rf"(?:{_PHRASE})+")
_IGNORED = re.compile(r"[\s、。,.!?！？…・]+")


def is_stock_phrase(text: str) -> bool:
    """Whether ``text`` is nothing but subtitle stock phrases (punctuation aside)."""
    bare = _IGNORED.sub("", text)
    return bool(bare) and _STOCK.fullmatch(bare) is not None
