"""Masking of personal data in what callers say, before anything is stored or published.

Callers of a tax line read out phone numbers, My Numbers, account and card numbers,
birth dates and addresses. None of that may reach the live monitor, MQTT or the call
records: every text field of a call event passes ``mask_text`` first, and
``MaskingSink`` puts that in front of every other sink.

The rules aim at what recognisers actually write: ASCII, full-width and kanji digits,
digits read out in katakana (ゼロキューゼロ…), hyphens of every width, and the contexts
that tell the numbers apart (マイナンバー, 口座, 生まれ, 丁目). FAQ-like text must pass
unchanged: 令和6年度, 6月30日, 1月1日現在, 5000円 and office hours are not personal data.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from voicebot.events import (
    BotSpeechStarted,
    CallEvent,
    CallStarted,
    EventSink,
)

log = logging.getLogger(__name__)

PHONE = "［電話番号］"
MY_NUMBER = "［マイナンバー］"
BIRTH_DATE = "［生年月日］"
ACCOUNT = "［口座番号］"
CARD = "［カード番号］"
ADDRESS = "［住所］"
NUMBER = "［番号］"  # a long number that is none of the above (宛名番号, 通知書番号, ...)

# -- normalisation (length-preserving, so that spans map back onto the original) ---------
WITHHELD = "［非表示］"  # what is left of a text that could not be masked

_WIDE_DIGITS = {ord("０") + i: ord("0") + i for i in range(10)}
_DASHES = {ord(c): ord("-") for c in "－‐‑‒–—―−﹣"}
_OTHER = {ord("　"): ord(" "), ord("（"): ord("("), ord("）"): ord(")"), ord("＋"): ord("+")}
_TABLE = {**_WIDE_DIGITS, **_DASHES, **_OTHER}

_KANJI_DIGITS = "〇零一二三四五六七八九"
_DIGIT_CHARS = "0-9" + _KANJI_DIGITS
# A long vowel mark right after a digit is a hyphen (ASR writes 090ー1234ー5678).
_CHOON_AFTER_DIGIT = re.compile(rf"(?<=[{_DIGIT_CHARS}])ー")

# Digits read out in kana. Single-character hiragana (に, し, く, ご, よ) are left out:
# they are particles far more often than digits.
_KANA_DIGITS: dict[str, str] = {
    "ゼロ": "0",
    "レイ": "0",
    "マル": "0",
    "ぜろ": "0",
    "れい": "0",
    "まる": "0",
    "イチ": "1",
    "いち": "1",
    "ニー": "2",
    "にー": "2",
    "ニ": "2",
    "サン": "3",
    "さん": "3",
    "ヨン": "4",
    "よん": "4",
    "ヨ": "4",
    "シ": "4",
    "ゴー": "5",
    "ごー": "5",
    "ゴ": "5",
    "ロク": "6",
    "ろく": "6",
    "ナナ": "7",
    "なな": "7",
    "シチ": "7",
    "ハチ": "8",
    "はち": "8",
    "キュウ": "9",
    "キュー": "9",
    "きゅう": "9",
    "きゅー": "9",
    "ク": "9",
}
_KANJI_VALUE = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")} | {"零": "0"}
_KANA_ALT = "|".join(sorted(_KANA_DIGITS, key=len, reverse=True))
_DIGIT = rf"(?:[{_DIGIT_CHARS}]|{_KANA_ALT})"
_DIGIT_RE = re.compile(_DIGIT)
_SEP = r"[-\s・.、,の()]{0,2}"

# A run of at least 7 digits, separators allowed between them (groups of a phone
# number, the spaces in a My Number). Classified afterwards by length and context.
_DIGIT_RUN = re.compile(
    rf"(?<![{_DIGIT_CHARS}])(?:\+\s?|\()?{_DIGIT}(?:{_SEP}{_DIGIT}){{6,}}(?![{_DIGIT_CHARS}])"
)
_AMOUNT_AFTER = re.compile(r"\s*(?:円|万|億|千|百|ドル|件|人|個|枚|回|%|％)")
# An 8-digit local number (1234-5678) counts as a phone number after these words.
_LOCAL_PHONE = re.compile(
    rf"(?:電話|携帯|連絡先|でんわ)[^{_DIGIT_CHARS}。]{{0,10}}?"
    rf"(?<![{_DIGIT_CHARS}])([0-9]{{2,4}}-[0-9]{{4}})(?![{_DIGIT_CHARS}-])"
)

# -- dates of birth ------------------------------------------------------------------------
_N = rf"[0-9{_KANJI_DIGITS}十]{{1,4}}"
_ERA = r"(?:昭和|平成|令和|大正|[SHRT][.\s]?)"
_KANJI_YEAR = rf"[一二千][{_KANJI_DIGITS}百千十]{{2,6}}年"  # 一九六〇年, 千九百六十年
_YEAR = rf"(?:{_ERA}\s*(?:元|{_N})\s*年|(?:19|20)?[0-9]{{2}}\s*年|{_KANJI_YEAR})"
_FULL_DATE = rf"{_YEAR}\s*{_N}\s*月\s*{_N}\s*日"
_SLASH = r"\s*[./\-]\s*"
_NUMERIC_DATE = (
    rf"(?:{_ERA}\s*[0-9]{{1,2}}|(?:19|20)[0-9]{{2}}){_SLASH}[0-9]{{1,2}}{_SLASH}[0-9]{{1,2}}"
)
_DATE = rf"(?:{_FULL_DATE}|{_NUMERIC_DATE})"
_BIRTH_DATE_RES = (
    # 生年月日は昭和45年3月2日 / 誕生日：1960/1/2
    re.compile(
        rf"(?:生年月日|誕生日|せいねんがっぴ|たんじょうび)[はがをの:：\s、]*(?:で?す?が?、?)?"
        rf"({_DATE}|{_N}\s*月\s*{_N}\s*日)"
    ),
    # 1960年1月2日生まれ / 昭和45年生まれ / 平成元年の生まれ
    re.compile(
        rf"((?:{_DATE}|{_YEAR}(?:\s*{_N}\s*月(?:\s*{_N}\s*日)?)?))\s*の?\s*(?:生まれ|生|うまれ)"
    ),
)

# -- addresses -----------------------------------------------------------------------------
_NAME = r"[\u4E00-\u9FFF々〆ヵヶケァ-ヴー]"
_ADMIN = rf"(?:{_NAME}{{1,4}}[都道府県])?(?:{_NAME}{{1,6}}?[市区町村郡])+"
_TOWN = rf"(?:{_NAME}|[がのノ]){{0,8}}?"
_BN = rf"[0-9{_KANJI_DIGITS}十]{{1,4}}"
_CHOME = rf"{_BN}\s*丁目(?:\s*{_BN}\s*番地?(?:\s*の?\s*{_BN}\s*号?)?)?"
_BANCHI = rf"{_BN}\s*番地(?:\s*の?\s*{_BN}\s*号?)?|{_BN}\s*番\s*{_BN}\s*号"
_HYPHENATED = r"[0-9]{1,4}-[0-9]{1,4}(?:-[0-9]{1,4})?(?![0-9-])"
_ADDRESS_RES = (
    # 東京都新宿区西新宿2-8-1, 〇〇市中央1丁目2番3号
    re.compile(rf"{_ADMIN}{_TOWN}(?:{_CHOME}|{_BANCHI}|{_HYPHENATED})"),
    # 中央3丁目5番 (no city named)
    re.compile(rf"{_NAME}{{0,6}}{_CHOME}|{_NAME}{{1,6}}(?:{_BANCHI})"),
    # 〒123-4567, 郵便番号は1234567
    re.compile(r"(?:〒|郵便番号[はがを:：\s]*)\s*[0-9]{3}-?[0-9]{4}(?![0-9])"),
)

_CONTEXT_CHARS = 16


def mask_text(text: str) -> str:
    """``text`` with personal data replaced by fixed tokens such as ［電話番号］.

    Idempotent: masking a masked text changes nothing.
    """
    if not text:
        return text
    norm = _CHOON_AFTER_DIGIT.sub("-", text.translate(_TABLE))
    spans: list[tuple[int, int, str, int]] = []  # start, end, token, priority

    for m in _DIGIT_RUN.finditer(norm):
        token = _classify_digits(norm, m)
        if token is not None:
            spans.append((m.start(), m.end(), token, 0))
    for m in _LOCAL_PHONE.finditer(norm):
        spans.append((m.start(1), m.end(1), PHONE, 1))
    for pattern in _BIRTH_DATE_RES:
        for m in pattern.finditer(norm):
            spans.append((m.start(1), m.end(1), BIRTH_DATE, 2))
    for pattern in _ADDRESS_RES:
        for m in pattern.finditer(norm):
            spans.append((m.start(), m.end(), ADDRESS, 3))
    if not spans:
        return text
    return _replace(text, spans)


def _classify_digits(norm: str, m: re.Match[str]) -> str | None:
    """Which kind of number a run of digits is, or None for one that is not personal."""
    digits = "".join(_digit_value(d) for d in _DIGIT_RE.findall(m.group()))
    if _AMOUNT_AFTER.match(norm, m.end()):
        return None
    before = norm[max(0, m.start() - _CONTEXT_CHARS) : m.start()]
    n = len(digits)
    international = m.group().lstrip("(").startswith("+")
    if ("マイナンバー" in before or "個人番号" in before) and n == 12:
        return MY_NUMBER
    if "カード" in before and 13 <= n <= 19:
        return CARD
    if "口座" in before and 7 <= n <= 8:
        return ACCOUNT
    if international and digits.startswith("81") and 11 <= n <= 13:
        return PHONE
    if digits.startswith("0") and 10 <= n <= 11:
        return PHONE
    if n == 12:
        return MY_NUMBER
    if 13 <= n <= 19:
        return CARD
    if n >= 10:
        return NUMBER
    if ("電話" in before or "携帯" in before) and n >= 8:
        return PHONE
    if "番号" in before:
        return NUMBER
    return None


def _digit_value(token: str) -> str:
    if token.isascii():
        return token
    return _KANJI_VALUE.get(token) or _KANA_DIGITS[token]


def _replace(text: str, spans: list[tuple[int, int, str, int]]) -> str:
    """Replace spans, earlier rules first where spans overlap (a phone number inside an
    address match stays a phone number), merging what overlaps."""
    chosen: list[tuple[int, int, str]] = []
    for start, end, token, _prio in sorted(spans, key=lambda s: (s[3], s[0], -(s[1] - s[0]))):
        overlapping = [c for c in chosen if c[0] < end and start < c[1]]
        if not overlapping:
            chosen.append((start, end, token))
            continue
        # A later, larger match (an address around a masked number) swallows the smaller.
        if all(start <= c[0] and c[1] <= end for c in overlapping) and token == ADDRESS:
            chosen = [c for c in chosen if c not in overlapping]
            chosen.append((start, end, token))
    out: list[str] = []
    pos = 0
    for start, end, token in sorted(chosen):
        out.append(text[pos:start])
        out.append(token)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def mask_caller(caller: str | None) -> str | None:
    """A caller identity (number or SIP URI) with the last four digits of its user part
    hidden and any display name dropped: enough for staff to tell calls apart, not to
    call back or identify the resident."""
    if not caller:
        return caller
    uri = caller
    if "<" in uri and ">" in uri:  # '"山田" <sip:0312345678@pbx>' -> the URI only
        uri = uri[uri.index("<") + 1 : uri.rindex(">")]
    user, at, host = uri.partition("@")
    chars = list(user)
    hidden = 0
    for i in range(len(chars) - 1, -1, -1):
        if hidden == 4:
            break
        if chars[i].isdigit():
            chars[i] = "*"
            hidden += 1
    return "".join(chars) + at + host


# -- events --------------------------------------------------------------------------------
_TEXT_KEYS = frozenset({"text", "heard", "utterance", "transcript", "caller_text"})


def mask_value(value: Any, key: str | None = None) -> Any:
    """Masks the caller's words wherever they sit in a nested payload (a handover summary,
    candidate lists): string values under text-like keys, recursively."""
    if isinstance(value, dict):
        return {k: mask_value(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, key) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_value(v, key) for v in value)
    if isinstance(value, str) and key in _TEXT_KEYS:
        return mask_text(value)
    return value


def mask_event(event: CallEvent) -> CallEvent:
    """A copy of ``event`` with every field that can hold personal data masked.

    The bot's own words (``BotSpeechStarted.text``) come from the FAQ and stay as they
    are: they may quote the city's own phone numbers on purpose.
    """
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if value is None:
            continue
        if f.name == "text" and isinstance(event, BotSpeechStarted):
            continue
        if f.name == "caller" and isinstance(event, CallStarted):
            changes[f.name] = mask_caller(value)
        elif f.name in ("text", "error") and isinstance(value, str):
            changes[f.name] = mask_text(value)
        elif f.name in ("summary", "candidates"):
            changes[f.name] = mask_value(value, f.name)
    return dataclasses.replace(event, **changes) if changes else event


class MaskingSink:
    """An EventSink that masks each event and passes the masked copy on.

    Put it in front of everything that stores or shows events, so that no sink ever
    sees an unmasked utterance. Should masking itself fail, the event still goes on (its
    timing and outcome matter to records and reports) with the caller's words withheld.
    """

    def __init__(self, inner: EventSink):
        self.inner = inner

    def emit(self, event: CallEvent) -> None:
        try:
            masked = mask_event(event)
        except Exception:
            log.exception("masking failed on a %s event of call %s", event.name, event.call_id)
            masked = _withheld(event)
        self.inner.emit(masked)


def _withheld(event: CallEvent) -> CallEvent:
    """``event`` with every field that could hold the caller's words replaced."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name in ("text", "error", "caller") and isinstance(value, str):
            changes[f.name] = WITHHELD
        elif f.name in ("summary", "candidates") and value:
            changes[f.name] = type(value)()
    return dataclasses.replace(event, **changes)
