"""Masking of personal data in what callers say, before anything is stored or published.

Callers of a tax line read out phone numbers, My Numbers, account and card numbers,
birth dates, names and addresses. None of that may reach the live monitor, MQTT or the
call records: every text field of a call event is masked first, and ``MaskingSink`` puts
that in front of every other sink.

Numbers are found in a canonical form of the text (``privacy.spoken_numbers``), where
every way a recogniser writes a digit (full-width, kanji, positional kanji, katakana and
hiragana readings, の and spaced hyphens between groups) has become plain digits. Then:

* any number of seven digits or more is masked, whatever surrounds it; it is labelled by
  the nearest cue before it in the sentence (電話, マイナンバー, 口座, ...) or by its shape;
* shorter numbers are masked after a number cue (電話番号は, 暗証番号, 口座), as address
  parts (2丁目8番1号, 2-8-1, 101号室) and as birth dates (an old full date, or any date
  near 生年月日/誕生日/生まれ);
* names are masked after 氏名は/名前は/名義は and before と申します/といいます, and after
  契約者は/世帯主は/父は/夫の and the like where what follows looks like a name.

Masking keeps state per call (``CallMasker``): the start of a number at the end of one
utterance (「電話番号は090の」) makes the rest of it in the next one (「1234の5678です」)
personal too. FAQ-like text passes unchanged: 令和6年度, 6月30日, 1通300円, 年4回,
100万円以下 and office hours are not personal data.

Numbers that hesitations split (「090、えーと、1234」) are one number in the canonical form;
where a pause is too long for that, numbers with only separators, hesitations and words
that confirm a group (です, はい) between them still count together, also across a
sentence end into a sentence of digits (「090です。1234です。5678です」): seven digits in
all are masked.

Every step is linear in the length of the text: one pass for the canonical form,
RE2 (linear-time, no backtracking) for the patterns with repetitions, and only literal
alternations (no quantifiers) for Python's ``re``. Texts longer than ``MAX_TEXT_CHARS``
are masked up to that length and the rest is dropped, so the cost per call of
``mask_text`` is bounded whatever a caller (or a broken recogniser) produces.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import re2

from privacy.spoken_numbers import (
    CONTINUATIONS,
    JOIN,
    NUMERIC_MARKERS,
    PAUSE_WORDS,
    Canonical,
    DigitRun,
    canonical,
    is_pause,
)
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallEvent,
    CallStarted,
    EventSink,
    IntentDecided,
    Recognized,
    TransferRequested,
)

log = logging.getLogger(__name__)

PHONE = "［電話番号］"
MY_NUMBER = "［マイナンバー］"
BIRTH_DATE = "［生年月日］"
ACCOUNT = "［口座番号］"
CARD = "［カード番号］"
ADDRESS = "［住所］"
NAME = "［氏名］"
AMOUNT = "［金額］"  # an amount of seven digits or more (an income, a balance)
NUMBER = "［番号］"  # a number that is none of the above (宛名番号, 通知書番号, 暗証番号, ...)
OMITTED = "［以下省略］"  # what stands for the rest of a text longer than MAX_TEXT_CHARS
WITHHELD = "［非表示］"  # what is left of a text that could not be masked
TOKENS = (PHONE, MY_NUMBER, BIRTH_DATE, ACCOUNT, CARD, ADDRESS, NAME, AMOUNT, NUMBER)

MAX_TEXT_CHARS = 500  # ~60 s of speech; an utterance is far shorter
MAX_PASSES = 3  # masking the masked text again until it stays the same, at most this often
PERSONAL_DIGITS = 7  # a number this long is masked whatever surrounds it
# Numbers with only separators and hesitations between them count as one number up to
# this gap (longer than the canonical form joins: the last line of defence).
MAX_PAUSE_CHARS = 24
BIRTH_YEARS_AGO = 15  # a full date at least this old is taken for a date of birth

# -- cues: the words that say what a nearby number or name is -------------------------------
_NUMBER_CUES = {
    PHONE: ("電話", "でんわ", "携帯", "けいたい", "連絡先", "れんらくさき", "TEL", "Tel", "tel"),
    MY_NUMBER: ("マイナンバー", "まいなんばー", "個人番号", "こじんばんごう"),
    ACCOUNT: ("口座", "こうざ", "通帳", "支店番号"),
    CARD: ("カード", "クレジット"),
    ADDRESS: ("〒", "郵便番号", "ゆうびんばんごう", "住所", "じゅうしょ", "所在地", "番地"),
    NUMBER: ("番号", "ばんごう", "暗証", "パスワード", "ナンバー", "記号", "ID", "ＩＤ"),
}
_BIRTH_CUES = ("生年月日", "せいねんがっぴ", "誕生日", "たんじょうび", "生まれ", "うまれ")
_BIRTH_CUES += ("産まれ", "出生", "誕生", "生誕")
_NAME_CUES = ("氏名", "名前", "なまえ", "名義", "名義人", "フルネーム", "契約者名")
# Who a name may follow (契約者は山田花子です, 夫の山田太郎が); far more often a noun
# does (本人確認書類, 納税者の方, 父の軽トラ): a name after them must look like one.
_RELATION_CUES = ("契約者", "世帯主", "納税者", "父", "母", "夫", "妻", "本人")
_CUE_KIND: dict[str, str] = {}
for _kind, _words in _NUMBER_CUES.items():
    _CUE_KIND.update(dict.fromkeys(_words, _kind))
    if _kind != NUMBER:  # 電話番号 is a phone number, not any number
        _CUE_KIND.update(dict.fromkeys((w + "番号" for w in _words), _kind))
        _CUE_KIND.update(dict.fromkeys((w + "ばんごう" for w in _words), _kind))
_CUE_KIND.update(dict.fromkeys(_BIRTH_CUES, BIRTH_DATE))
_CUE_KIND.update(dict.fromkeys(_NAME_CUES, NAME))
_CUE_KIND.update(dict.fromkeys(_RELATION_CUES, NAME))
_CUE_KIND["マイナンバーカード"] = MY_NUMBER
_CUE_KIND["個人番号カード"] = MY_NUMBER
# A literal alternation (no quantifier): at most one attempt per cue word and position.
_CUE_RE = re.compile("|".join(map(re.escape, sorted(_CUE_KIND, key=len, reverse=True))))
_NUMBER_KINDS = frozenset(_NUMBER_CUES)
_SENTENCE_ENDS = frozenset("。？！?!\n")
# After a number: a unit that makes it a date, a time, a count or an amount, not an id.
_UNITS = frozenset("年月日時分秒円万億兆回件人歳才期度階%％か個枚通本倍割")
_PLACE_CHARS = re2.compile(r"[\p{Han}々〆ヶヵ\p{Katakana}ー]")
_NOT_PLACE = frozenset("第年月日度期条回号番分時")
_MAX_PLACE_CHARS = 12
# What may stand between a cue and what it announces, or around a number that goes on.
# Names are found after fewer of them than numbers: a name in kana may begin like a
# hesitation (えりこ, まあこ).
_FILLER = "えっと|えーと|ええと|えー|ええ|あのー|あの|その|はい|で|それで"
# Hesitations and words that say a number goes on (「です」, 「はい」), from the canonical
# form's own list: one list for joining groups and for carrying a number on.
_PAUSE_WORD = "|".join(map(re2.escape, PAUSE_WORDS))
_PAUSE_RE = re2.compile(rf"^(?:[\s、,。.・\-のノー…]|{_PAUSE_WORD})*$")
_AFTER_CUE_RE = re2.compile(rf"^(?:[\s、,。.・:：はがをの]|でございます|{_PAUSE_WORD})*$")
# What after a number says "this group was confirmed", not "a separator follows".
_CONTINUATION_RE = re2.compile("^(?:" + "|".join(map(re2.escape, CONTINUATIONS)) + ")")

# -- dates -----------------------------------------------------------------------------------
_ERAS = {"明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
_ERAS |= {"M": 1867, "T": 1911, "S": 1925, "H": 1988, "R": 2018}
_J = r"[\sのは、,]{0,2}"
_YEAR = r"(?:(?:明治|大正|昭和|平成|令和|[MTSHR])\s?(?:\d{1,2}|元)|\d{4}|\d{2})\s?年"
_DATE_RE = re2.compile(
    # 1: full date, 2: numeric date, 3: year and month, 4: month and day, 5: era year
    rf"({_YEAR}{_J}\d{{1,2}}\s?月{_J}\d{{1,2}}\s?日)"
    rf"|((?:(?:明治|大正|昭和|平成|令和|[MTSHR])\s?\d{{1,2}}|\d{{4}})[-/]\d{{1,2}}[-/]\d{{1,2}})"
    rf"|({_YEAR}{_J}\d{{1,2}}\s?月)"
    rf"|(\d{{1,2}}\s?月{_J}\d{{1,2}}\s?日)"
    r"|((?:明治|大正|昭和|平成|令和)\s?(?:\d{1,2}|元)\s?年|\d{4}\s?年)"
    r"|(\d{1,2}[-/]\d{1,2})"  # 3/2 (a birth date only next to a birth cue)
)
_YEAR_RE = re2.compile(r"^(明治|大正|昭和|平成|令和|[MTSHR])?\s?(\d{1,4}|元)")

# -- addresses -------------------------------------------------------------------------------
_SEP = r"[\-のノ\s]{0,2}"
_ADDRESS_RE = re2.compile(
    r"[\p{Han}々〆ヶヵ\p{Katakana}ー]{0,12}(?:"
    rf"\d{{1,4}}丁目(?:{_SEP}\d{{1,4}}(?:番地|番)?)?(?:{_SEP}\d{{1,4}}号?)?"
    rf"|\d{{1,4}}番地(?:{_SEP}\d{{1,4}}号?)?"
    rf"|\d{{1,4}}番{_SEP}\d{{1,4}}号"
    r"|\d{1,5}号(?:室|棟|館)|\d{3,4}号"
    r")"
    # a room in a named building: ハイツ緑203, 市営住宅の3
    r"|(?:ハイツ|マンション|コーポ|ハイム|アパート|ビル|荘|レジデンス|メゾン|団地|住宅)"
    r"[\p{Han}\p{Katakana}ー]{0,8}[\sのノ]{0,2}\d{1,4}"
)

# -- names -----------------------------------------------------------------------------------
_STRONG_END = r"(?:です|と申|といい|と言い|っていい|って言い|でござ|さん|様)"
_NAME_END = rf"(?:{_STRONG_END}|、|。|\s|\x00)"
# A particle after a name (名前は山田太郎で、, 名義は山田花子になっています, 夫の山田太郎が):
# nouns end the same way, so a name before one must look like a name (``_name_like``).
_WEAK_END = r"(?:で[、,。\s\x00]|に(?:なり|なっ|なる)|[がをのと])"
_ANY_NAME_END = rf"(?:{_NAME_END}|{_WEAK_END})"
# Kanji, also with katakana (山田ハナコ); a kana given name after it (山田はなこ) only
# before です/と申します (名前は変更できますか is no name).
_KANJI_NAME = (
    r"[\p{Han}々ヶ][\p{Han}々ヶ\p{Katakana}ー]{0,11}(?:[ 　][\p{Han}々ヶ\p{Katakana}ー]{1,10})?"
)
_KATAKANA_NAME = r"[\p{Katakana}ー]{2,12}(?:[ 　・][\p{Katakana}ー]{1,10})?"
_HIRAGANA_NAME = r"[\p{Hiragana}ー]{2,12}?"
_HIRAGANA_GROUP = 4  # the capture group of a name in hiragana, in both patterns below
_LATIN_NAME = r"[A-Za-z][A-Za-z'.\-]{0,19}(?: [A-Za-z][A-Za-z'.\-]{0,19}){0,2}"
# After a name cue (名前は, 氏名：), on a bounded window that ends in \x00 at the text's end.
# A name in hiragana only before a strong ending: まちがって is no name.
_NAME_AFTER_CUE_RE = re2.compile(
    rf"^(?:[\s、,:：はがの]|です|{_FILLER})*"
    rf"(?:({_KANJI_NAME}){_ANY_NAME_END}|({_KANJI_NAME}\p{{Hiragana}}{{1,6}}?){_STRONG_END}"
    rf"|({_KATAKANA_NAME}){_ANY_NAME_END}|({_HIRAGANA_NAME}){_NAME_END}"
    rf"|({_LATIN_NAME}){_ANY_NAME_END})"
)
_STRONG_AFTER_NAME_RE = re2.compile(rf"^{_NAME_END}")
# Kanji of the words that follow 父の, 本人の, 名前は ... が in a tax office's calls
# (課税証明書, 住民税, 扶養, 確認書類) and hardly ever stand in a name.
_NOT_NAME_KANJI = frozenset(
    "税得控除額扶養給与収証届続課更確認申告険料費務業等類書請求済納支払滞延還減免象者割"
    "制度査評価算計録籍票婚死亡産贈営職勤障害齢院病気件車軽物様期限通状況容用漢字表記"
    "変住所民県府区役署庁局省室窓係員会社協組校店号番資固"
)
_NOT_NAME_LAST = frozenset("者員書所料証額日月年度課係制的業費職用")
_NOT_NAME_WORDS = ("代理", "管理", "後見", "主人", "家族", "親族", "本人", "家内")
_INTRO = r"(?:と申し|といいます|と言います|っていいます|って言います)"
_NAME_INTRO_RE = re2.compile(
    rf"(?:私|わたし|わたくし|僕|ぼく)?(?:は|、)?"
    rf"(?:({_KANJI_NAME})|({_KANJI_NAME}\p{{Hiragana}}{{1,6}}?)|({_KATAKANA_NAME})"
    rf"|({_HIRAGANA_NAME})){_INTRO}"
)
_SELF_RE = re2.compile(r"(?:私|わたし|わたくし|僕|ぼく)は、?([\p{Han}々ヶ]{2,6})です")
# Last characters of nouns that follow 私は ... です without being a name (会社員, 年金生活者).
_NOT_NAME_END = frozenset("税者員金書所料証額日月年度市区町村課係制的中人民業生費職身夫用分")
_NAME_PREFIXES = ("えっと", "えーと", "あのー", "あの", "わたくし", "わたし", "ぼく", "おれ")


@dataclasses.dataclass(frozen=True)
class _Carry:
    """What an utterance leaves for the next one of the same call."""

    digits: int = 0  # digits of a number left unfinished at its end
    label: str | None = None  # what that number, or a cue at the very end, announces


@dataclasses.dataclass(frozen=True)
class _Span:
    start: int  # canonical span
    end: int
    label: str
    priority: int  # lower wins where spans overlap


_PRIORITY = {PHONE: 0, MY_NUMBER: 0, ACCOUNT: 0, CARD: 0, NUMBER: 1, AMOUNT: 1}
_PRIORITY |= {BIRTH_DATE: 2, ADDRESS: 3, NAME: 4}


class CallMasker:
    """Masks the utterances of one call in order, carrying an unfinished number or a cue
    from one utterance to the next.

    ``mask`` with ``commit=False`` (an interim recognition) uses the state but leaves it as
    it was. Masking the same text again right after it was committed (the decision on
    an utterance repeats its words) gives the same result without moving the state on.
    Not thread-safe: one call's events arrive in order from one place.
    """

    def __init__(self, today: dt.date | None = None):
        self._carry = _Carry()
        self._last: tuple[str, str] | None = None  # last committed text and its masked form
        self._birth_cutoff = (today or dt.date.today()).year - BIRTH_YEARS_AGO

    def mask(self, text: str, *, commit: bool = True) -> str:
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        masked, carry = _mask(text, self._carry, self._birth_cutoff)
        if commit:
            self._carry = carry
            self._last = (text, masked)
        return masked

    def mask_all(self, texts: Iterable[str]) -> list[str]:
        """Masks a sequence of utterances of one call (the turns of a handover summary)."""
        return [self.mask(t) for t in texts]


def mask_text(text: str) -> str:
    """``text`` with personal data replaced by fixed tokens such as ［電話番号］.

    One utterance on its own; a call's utterances in order go through a ``CallMasker``.
    Idempotent: masking a masked text changes nothing.
    """
    return _mask(text, _Carry(), dt.date.today().year - BIRTH_YEARS_AGO)[0]


def _mask(text: str, carry: _Carry, birth_cutoff: int) -> tuple[str, _Carry]:
    if not text:
        return text, _Carry()
    truncated = len(text) > MAX_TEXT_CHARS
    head = text[:MAX_TEXT_CHARS] if truncated else text
    masked, carry = _mask_once(head, carry, truncated, birth_cutoff)
    # Masking one number changes how its neighbours read (a lone ゴ after a hidden number
    # is a digit of the next one), so the result is masked again until nothing changes:
    # a few passes at most, each linear.
    for _ in range(MAX_PASSES - 1):
        if masked == head:
            break
        head = masked
        masked, _ = _mask_once(head, _Carry(), truncated, birth_cutoff)
    return (masked + OMITTED if truncated else masked), carry


def _mask_once(head: str, carry: _Carry, truncated: bool, birth_cutoff: int) -> tuple[str, _Carry]:
    c = canonical(head)
    t = _hide_tokens(c.text)
    spans, carry = _find(c, t, carry, truncated, birth_cutoff)
    return (_replace(c, spans) if spans else head), carry


def _hide_tokens(t: str) -> str:
    """The canonical text with the words inside masking tokens hidden from the cues
    (［電話番号］ must not make a later number a phone number: masking is idempotent)."""
    if "［" not in t:
        return t
    for token in TOKENS:
        if token in t:
            t = t.replace(token, "［" + "＊" * (len(token) - 2) + "］")
    return t


def _find(
    c: Canonical, t: str, carry: _Carry, truncated: bool, birth_cutoff: int
) -> tuple[list[_Span], _Carry]:
    """Everything personal in the canonical text ``t``, and what carries to the next one."""
    if not c.runs and _PAUSE_RE.match(t):
        return [], carry  # 「えっと」 between 「電話番号は」 and the number: still waiting
    cues = [(m.start(), m.end(), _CUE_KIND[m.group()]) for m in _CUE_RE.finditer(t)]
    if carry.label is not None and carry.digits == 0:
        cues.insert(0, (0, 0, carry.label))  # 「電話番号は」 ended the last utterance
    spans: list[_Span] = []
    runs = c.runs
    number_cue = _active_cues(t, cues, runs, _NUMBER_KINDS)
    last = runs[-1] if runs else None
    unfinished = last is not None and (
        (truncated and last.end >= len(t) - 1) or bool(_PAUSE_RE.match(t[last.end :]))
    )
    next_carry = _Carry()
    for k, run in enumerate(runs):
        leading = (
            k == 0
            and carry.digits > 0
            and t[run.end : run.end + 1] not in _UNITS  # 6月30日 does not go on with 090の
            and bool(_PAUSE_RE.match(t[: run.start]))
        )
        total = len(run.digits) + (carry.digits if leading else 0)
        label = _run_label(t, run, total, number_cue[k], leading, carry)
        trailing = run is last and unfinished
        if label is None and trailing:
            label = _unfinished_label(t, run, truncated, number_cue[k])
        elif label == NUMBER and trailing and run.digits.startswith("0") and not number_cue[k]:
            label = PHONE  # 090-1234- (and the rest to come)
        if label is not None:
            start = run.start - 1 if run.start > 0 and t[run.start - 1] in "(+（＋" else run.start
            if label == ADDRESS:
                start = _place_start(t, start)
            spans.append(_Span(start, run.end, label, _PRIORITY[label]))
        if trailing:
            next_carry = _Carry(min(total, 64), label or number_cue[k] or NUMBER)
    spans.extend(_paused_sequences(t, runs, number_cue))
    if not runs or not unfinished:
        end_cue = _cue_at_end(t, cues)
        if end_cue is not None:
            next_carry = _Carry(0, end_cue)
    if runs and ("年" in t or "月" in t or "/" in t or JOIN in t):
        spans.extend(_birth_dates(t, cues, birth_cutoff))
    if runs:
        spans.extend(_Span(m.start(), m.end(), ADDRESS, 3) for m in _ADDRESS_RE.finditer(t))
    spans.extend(_names(t, cues))
    return spans, next_carry


def _paused_sequences(t: str, runs: list[DigitRun], cues: list[str | None]) -> list[_Span]:
    """Numbers with only separators and hesitations between them (「090、えーと、あのー、
    それで」 and on) that together have ``PERSONAL_DIGITS`` digits or more: one number,
    masked whatever the cue, even where the pause was too long for the canonical form to
    join them."""
    spans: list[_Span] = []
    k = 0
    while k < len(runs):
        m = k
        digits = len(runs[k].digits)
        while (
            m + 1 < len(runs)
            and runs[m + 1].start - runs[m].end <= MAX_PAUSE_CHARS
            and _goes_on(t, runs[m], runs[m + 1])
        ):
            m += 1
            digits += len(runs[m].digits)
        if m > k and digits >= PERSONAL_DIGITS:
            group = runs[k : m + 1]
            joined = DigitRun(
                group[0].start,
                group[-1].end,
                "".join(r.digits for r in group),
                tuple(g for r in group for g in r.groups),
            )
            label = _run_label(t, joined, digits, cues[k], False, _Carry()) or NUMBER
            spans.append(_Span(joined.start, joined.end, label, _PRIORITY[label]))
        k = m + 1
    return spans


def _goes_on(t: str, run: DigitRun, nxt: DigitRun) -> bool:
    """Whether ``nxt`` continues the number of ``run``: only pauses between them, and
    across a sentence end (「090です。1234です。」) only into a sentence of digits."""
    gap = t[run.end : nxt.start]
    if is_pause(gap):
        return True
    return is_pause(gap, across_sentences=True) and _digits_only_sentence(t, nxt)


def _active_cues(
    t: str, cues: list[tuple[int, int, str]], runs: list[DigitRun], kinds: frozenset[str]
) -> list[str | None]:
    """For each run, the kind of the last cue of ``kinds`` before it in its sentence."""
    out: list[str | None] = []
    ci = 0
    active: str | None = None
    pos = 0
    for run in runs:
        while ci < len(cues) and cues[ci][1] <= run.start:
            if any(ch in _SENTENCE_ENDS for ch in t[pos : cues[ci][0]]):
                active = None
            kind = cues[ci][2]
            if kind in kinds and not (kind == NUMBER and active is not None):
                active = kind  # 携帯の番号: still a phone number
            pos = cues[ci][1]
            ci += 1
        gap = t[pos : run.start]
        # A sentence end drops the cue, unless the number goes on in a sentence of its
        # own (「電話番号は090です。1234です」).
        if (
            active is not None
            and any(ch in _SENTENCE_ENDS for ch in gap)
            and not (is_pause(gap, across_sentences=True) and _digits_only_sentence(t, run))
        ):
            active = None
        pos = max(pos, run.end)
        out.append(active)
    return out


def _digits_only_sentence(t: str, run: DigitRun) -> bool:
    """Whether the sentence of ``run`` holds nothing after it but pauses (「1234です。」),
    looked at over a bounded window."""
    rest = t[run.end : run.end + MAX_PAUSE_CHARS + 1]
    for i, ch in enumerate(rest):
        if ch in _SENTENCE_ENDS:
            rest = rest[:i]
            break
    else:
        if run.end + len(rest) < len(t):
            return False
    return _PAUSE_RE.match(rest) is not None


def _run_label(
    t: str, run: DigitRun, total: int, cue: str | None, leading: bool, carry: _Carry
) -> str | None:
    """What a run of digits is, if it is personal."""
    after = t[run.end : run.end + 1]
    unit = after in _UNITS or after in NUMERIC_MARKERS
    if total >= PERSONAL_DIGITS:
        if leading and carry.label is not None:
            return carry.label
        if cue is not None and cue != NUMBER:
            return cue
        if after in ("円", "万", "億", "ド"):
            return AMOUNT
        if run.digits.startswith("0") and 10 <= total <= 11:
            return PHONE
        if t[run.start - 1 : run.start] == "+" and run.digits.startswith("81"):
            return PHONE
        if total == 12:
            return MY_NUMBER
        if 13 <= total <= 19:
            return CARD
        return NUMBER
    if leading:
        return carry.label or NUMBER
    if unit:
        return None
    if cue is not None and len(run.digits) >= 2:
        return cue
    if len(run.groups) >= 3 and max(run.groups) <= 4:
        return ADDRESS  # 2-8-1
    if len(run.groups) == 2 and max(run.groups) <= 4 and run.start > 0:
        before = t[run.start - 1]
        if before not in _NOT_PLACE and _PLACE_CHARS.match(before):
            return ADDRESS  # 西新宿8-1
    return None


def _unfinished_label(t: str, run: DigitRun, truncated: bool, cue: str | None) -> str | None:
    """A number at the very end that may go on in the next utterance: masked when it
    looks like the start of one (090, 1234の) or a cue announced it."""
    if truncated or cue is not None:
        return cue or NUMBER
    rest = t[run.end : run.end + 8]
    ends_with_separator = (
        rest[:1] not in ("", " ") and _CONTINUATION_RE.match(rest) is None
    )  # 1234の, not 5000です
    if ends_with_separator or (run.digits.startswith("0") and len(run.digits) >= 2):
        return PHONE if run.digits.startswith("0") else NUMBER
    return None


def _place_start(t: str, start: int) -> int:
    """Where the place name before an address number begins (西新宿 of 西新宿2-8-1)."""
    limit = max(0, start - _MAX_PLACE_CHARS)
    if start > 0 and t[start - 1] in _NOT_PLACE:
        return start
    while start > limit and _PLACE_CHARS.match(t[start - 1]):
        start -= 1
    return start


def _cue_at_end(t: str, cues: list[tuple[int, int, str]]) -> str | None:
    """The kind of a cue that ends the text (「電話番号は」, 「お名前は、えっと」)."""
    if not cues:
        return None
    start, end, kind = cues[-1]
    if end == 0 and start == 0 and t.strip():
        return None  # a carried cue that this utterance did not answer
    if t[start:end] in _RELATION_CUES:
        return None  # 「父は」: a name may follow, or anything else
    return kind if _AFTER_CUE_RE.match(t[end:]) else None


def _birth_dates(t: str, cues: list[tuple[int, int, str]], cutoff: int) -> list[_Span]:
    """Dates of birth: an old full date, or any date in an utterance about a birth."""
    cued = any(kind == BIRTH_DATE for _, _, kind in cues)
    spans = []
    for m in _DATE_RE.finditer(t):
        if m.group(6) is not None and _inside_number(t, m.start(), m.end()):
            continue  # the 1-2 of an address 1-2-3 is no date
        full = m.group(1) or m.group(2)
        if cued or (full is not None and _old_year(full, cutoff)):
            spans.append(_Span(m.start(), m.end(), BIRTH_DATE, 2))
    return spans


def _inside_number(t: str, start: int, end: int) -> bool:
    return t[start - 1 : start] in _DATE_NEIGHBOURS or t[end : end + 1] in _DATE_NEIGHBOURS


_DATE_NEIGHBOURS = frozenset("0123456789-/")


def _old_year(date: str, cutoff: int) -> bool:
    """Whether a full date lies in a year at or before ``cutoff`` (a birth year, not a
    deadline: 令和7年1月1日 is not one, 昭和45年3月2日 and 平成元年5月5日 are)."""
    m = _YEAR_RE.match(date)
    if m is None:
        return False
    era, number = m.group(1), m.group(2)
    value = 1 if number == "元" else int(number)
    if era is not None:
        return _ERAS[era] + value <= cutoff
    if value >= 1000:
        return value <= cutoff
    # A two-digit year without an era: old unless it can be this era's year.
    return value > dt.date.today().year - _ERAS["令和"] + 1


def _names(t: str, cues: list[tuple[int, int, str]]) -> list[_Span]:
    spans = []
    for start, end, kind in cues:
        if kind != NAME:
            continue
        window = t[end : end + 40]
        m = _NAME_AFTER_CUE_RE.match(window + ("\x00" if end + 40 >= len(t) else ""))
        if m is not None:
            group = next(g for g in (1, 2, 3, 4, 5) if m.group(g) is not None)
            name = m.group(group)
            if group == _HIRAGANA_GROUP and name.startswith(_NAME_PREFIXES):
                continue  # 名前は、えっと、［氏名］: a filler, not a name
            strong = _STRONG_AFTER_NAME_RE.match(window[m.end(group) :] + "\x00") is not None
            relation = t[start:end] in _RELATION_CUES
            if (relation or not strong) and not _name_like(name, relation):
                continue  # 本人確認書類を, 名前の漢字が, 父の軽トラを
            spans.append(_Span(end + m.start(group), end + m.end(group), NAME, 4))
    if "申" in t or "いいます" in t or "言います" in t:
        for m in _NAME_INTRO_RE.finditer(t):
            group = next(g for g in (1, 2, 3, 4) if m.group(g) is not None)
            start, end = m.span(group)
            if group == _HIRAGANA_GROUP:
                start = _strip_name_prefix(t, start, end)
            after = t[m.end() : m.end() + 1]
            if "申" not in m.group() and after in ("か", "と", "の", "が", "よ"):
                continue  # 固定資産税といいますか: not an introduction
            spans.append(_Span(start, end, NAME, 4))
    if "です" in t:
        for m in _SELF_RE.finditer(t):
            if m.group(1)[-1] not in _NOT_NAME_END:
                spans.append(_Span(m.start(1), m.end(1), NAME, 4))
    return spans


def _name_like(name: str, relation: bool) -> bool:
    """Whether words found where a name may stand look like a person's name rather than
    a noun: in Latin letters, or written with a space or ・ between its parts, or at
    least three kanji (山田太郎) of which none belongs to tax office words. Katakana
    alone (フリガナ, トラック) passes only after a name cue such as 名前は."""
    if name[0].isascii():
        return True
    if any(ch in _NOT_NAME_KANJI for ch in name) or name[-1] in _NOT_NAME_LAST:
        return False
    if any(word in name for word in _NOT_NAME_WORDS):
        return False  # 母の代理人
    if relation and any("ぁ" <= ch <= "ゖ" for ch in name):
        return False  # 父が無くなったんです
    if " " in name or "・" in name or "\u3000" in name:
        return True
    if _PLACE_CHARS.match(name[0]) and not ("ァ" <= name[0] <= "ヺ"):
        return len(name) >= 3  # kanji first: 山田太郎, 山田ハナコ
    return not relation and len(name) >= 3


def _strip_name_prefix(t: str, start: int, end: int) -> int:
    """Skip fillers and 私は before a name in kana (えっとわたしはやまだたろう)."""
    moved = True
    while moved and start < end:
        moved = False
        for prefix in _NAME_PREFIXES:
            if t.startswith(prefix, start, end):
                start += len(prefix)
                moved = True
        while start < end and t[start] in "はがも、":
            start += 1
            moved = True
    return start


def _replace(c: Canonical, spans: list[_Span]) -> str:
    """The original text with every span masked; overlapping spans are merged and take
    the label of the most specific one (a phone number inside an address match)."""
    located = []
    for s in spans:
        start, end = c.span(s.start, s.end)
        if end > start:
            located.append((start, end, s.priority, s.label))
    located.sort()
    merged: list[list[Any]] = []
    for start, end, priority, label in located:
        if merged and start < merged[-1][1]:
            cur = merged[-1]
            cur[1] = max(cur[1], end)
            if priority < cur[2]:
                cur[2], cur[3] = priority, label
        else:
            merged.append([start, end, priority, label])
    out: list[str] = []
    pos = 0
    for start, end, _priority, label in merged:
        out.append(c.original[pos:start])
        out.append(label)
        pos = end
    out.append(c.original[pos:])
    return "".join(out)


CALLER_SHOWN_DIGITS = PERSONAL_DIGITS - 1  # never a whole number: at most six digits
CALLER_HIDDEN_DIGITS = 4  # and never fewer hidden than the last four
_SCHEME_RE = re.compile("(?i:sips|sip|tel):")  # no quantifier: one attempt per call
_DIGITS = frozenset("0123456789")


def mask_caller(caller: str | None) -> str | None:
    """A caller identity (number or SIP/tel URI) with the display name dropped and the
    number in its user part cut down to its first digits (at most six, never with the
    last four): enough for staff to tell calls apart, not to call back or identify
    the resident.

    The value comes from the caller's own SIP headers, so it is read as hostile: a
    quoted display name may hold ``<`` or a phone number, digits may be percent-encoded,
    a tel: URI may carry ``;ext=`` or ``;isub=``. Whatever the shape, no seven digits of
    one number remain.
    """
    if not caller:
        return caller
    uri = _caller_uri(caller)
    scheme = _SCHEME_RE.match(uri)
    head = scheme.group() if scheme else ""
    user, at, host = uri[len(head) :].partition("@")
    number, semi, params = urllib.parse.unquote(user).partition(";")
    masked = _cut_number(number) + semi + _star_digits(params)
    if any(len(r.digits) >= PERSONAL_DIGITS for r in canonical(masked).runs):
        masked = mask_text(masked)  # digits in kanji or in a reading
    return head + masked + at + _star_long_numbers(urllib.parse.unquote(host))


def _caller_uri(caller: str) -> str:
    """The URI of a From-like value (``"name" <uri>``, ``name <uri>``, ``uri``), without
    the display name. A quoted name may hold ``<``, ``>`` and escaped quotes."""
    rest = caller.strip()
    quoted = False
    if rest.startswith('"'):
        i = 1
        while i < len(rest) and rest[i] != '"':
            i += 2 if rest[i] == "\\" else 1
        if i < len(rest):  # unterminated: no name to skip, the rest is searched as it is
            rest, quoted = rest[i + 1 :].strip(), True
    if "<" in rest:
        start = rest.rindex("<") + 1
        end = rest.find(">", start)
        return rest[start : end if end >= 0 else len(rest)].strip()
    words = rest.split()
    if not quoted and len(words) > 1 and (":" in words[-1] or "@" in words[-1]):
        return words[-1]  # a display name without brackets
    return rest


def _cut_number(number: str) -> str:
    """``number`` with all digits hidden but the first ``CALLER_SHOWN_DIGITS``, and at
    least the last ``CALLER_HIDDEN_DIGITS`` hidden (all of a short one)."""
    count = sum(1 for ch in number if ch.isdigit())
    hide = max(CALLER_HIDDEN_DIGITS, count - CALLER_SHOWN_DIGITS)
    shown = count - hide
    out = []
    for ch in number:
        if ch.isdigit():
            out.append(ch if shown > 0 else "*")
            shown -= 1
        else:
            out.append(ch)
    return "".join(out)


def _star_digits(text: str) -> str:
    return "".join("*" if ch.isdigit() else ch for ch in text)


_HOST_NUMBER_RE = re.compile(r"\d[\d\-.]*")
# An IPv4 address as hosts write it: no leading zeros, and no 0 first (0.90.123.45).
_IPV4_RE = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d?)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def _star_long_numbers(host: str) -> str:
    """The host part as it is (an address or a name, not the caller's), but a number of
    seven digits or more in it hidden, whether its groups are joined by '-' or '.'
    (sip:anon@09012345678.example, sip:anon@090.1234.5678.example). An IPv4 address in
    its usual form (no leading zeros) stays: staff need to see where a call came from."""

    def star(m: re.Match[str]) -> str:
        number = m.group().rstrip(".")
        if _IPV4_RE.fullmatch(number):
            return m.group()
        digits = sum(1 for ch in number if ch.isdigit())
        return _star_digits(m.group()) if digits >= PERSONAL_DIGITS else m.group()

    return _HOST_NUMBER_RE.sub(star, host)


# -- events --------------------------------------------------------------------------------
_TEXT_KEYS = frozenset({"text", "heard", "utterance", "transcript", "caller_text"})


def mask_value(value: Any, key: str | None = None, masker: CallMasker | None = None) -> Any:
    """Masks the caller's words wherever they sit in a nested payload (a handover summary,
    candidate lists): string values under text-like keys, recursively, in order (with
    ``masker``, the turns of one call carry an unfinished number from one to the next)."""
    if isinstance(value, dict):
        return {k: mask_value(v, k, masker) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, key, masker) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_value(v, key, masker) for v in value)
    if isinstance(value, str) and key in _TEXT_KEYS:
        return masker.mask(value) if masker is not None else mask_text(value)
    return value


def mask_event(event: CallEvent, masker: CallMasker | None = None) -> CallEvent:
    """A copy of ``event`` with every field that can hold personal data masked.

    ``masker`` is the call's own (``MaskingSink`` keeps one per call): final recognitions
    move it on, interim ones and the decision on an utterance only read it. The bot's
    own words (``BotSpeechStarted.text``) come from the FAQ and stay as they are: they may
    quote the city's own phone numbers on purpose.
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
        elif f.name == "text" and isinstance(value, str) and masker is not None:
            commit = isinstance(event, Recognized) and event.final
            changes[f.name] = masker.mask(value, commit=commit)
        elif f.name in ("text", "error") and isinstance(value, str):
            changes[f.name] = mask_text(value)
        elif f.name == "summary" and isinstance(event, TransferRequested):
            changes[f.name] = mask_value(value, f.name, CallMasker())  # the turns in order
        elif f.name in ("summary", "candidates"):
            changes[f.name] = mask_value(value, f.name)
    return dataclasses.replace(event, **changes) if changes else event


class MaskingSink:
    """An EventSink that masks each event and passes the masked copy on.

    Put it in front of everything that stores or shows events, so that no sink ever
    sees an unmasked utterance. It keeps a ``CallMasker`` per call (a number split over
    two utterances is masked in both), dropped when the call ends; at most
    ``max_calls`` of them, the oldest going first, so calls that never end cannot pile
    up. Should masking itself fail, the event still goes on (its timing and outcome
    matter to records and reports) with the caller's words withheld.
    """

    def __init__(self, inner: EventSink, max_calls: int = 4096):
        self.inner = inner
        self.max_calls = max_calls
        self._maskers: OrderedDict[str, CallMasker] = OrderedDict()
        self._lock = threading.Lock()

    def emit(self, event: CallEvent) -> None:
        try:
            masked = mask_event(event, self._masker(event))
        except Exception:
            log.exception("masking failed on a %s event of call %s", event.name, event.call_id)
            masked = _withheld(event)
        self.inner.emit(masked)

    def _masker(self, event: CallEvent) -> CallMasker | None:
        if not isinstance(event, Recognized | IntentDecided | CallEnded):
            return None
        with self._lock:
            if isinstance(event, CallEnded):
                self._maskers.pop(event.call_id, None)
                return None
            masker = self._maskers.get(event.call_id)
            if masker is None:
                masker = self._maskers[event.call_id] = CallMasker()
                while len(self._maskers) > self.max_calls:
                    self._maskers.popitem(last=False)
            else:
                self._maskers.move_to_end(event.call_id)
            return masker

    @property
    def calls(self) -> int:
        """Calls whose masking state is kept."""
        return len(self._maskers)


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
