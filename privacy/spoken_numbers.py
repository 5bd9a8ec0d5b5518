"""Numbers as a recogniser writes them, turned into plain digits that map back onto the text.

A caller's phone number reaches the transcript in many shapes: 090-1234-5678, ０９０ー１２３４,
〇九〇の千二百三十四, ゼロキューゼロ、イチニーサンヨン, ぜろきゅうぜろ, 090 の 1234. Masking
rules that look for each shape separately always miss the next one, so the text is first
rewritten into a canonical form: every way of writing a digit becomes an ASCII digit,
positional numerals (千二百三十四, よんじゅうご) become their value, kana markers after a
number become their kanji (ねん→年, がつ→月, ちょうめ→丁目, ばん→番, ごう→号), and the
separators between groups of a number (hyphens, spaces, の, 、, ~, 「」, と, hesitations
such as えーと or あのー, and words that confirm a group: です, はい) become a single "-".
Every Unicode space becomes an ASCII one (RE2 takes only ASCII spaces for a space), and
characters that show nothing (format characters, combining marks) are dropped.
Every canonical character remembers which span of the original text it came from, so a
match on the canonical text can be masked in the original.

One pass over the text with a bounded look-ahead (the longest kana reading is five
characters): linear time, whatever the input.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import re2

JOIN = "-"  # what a separator between two groups of one number becomes
MAX_SEPARATOR_CHARS = 5  # "090 - 1234" or "090 の 1234" still join; a longer gap does not
MAX_FILLER_GAP_CHARS = 10  # "、あのー、えっと、" between two groups still joins
# Hesitations a caller makes between the groups of a number (written in hiragana here;
# katakana is folded before matching). A gap of these and separators joins the groups.
FILLERS = (
    *("えーっと", "ええっと", "えーと", "ええと", "えっと", "えと", "えー", "え"),
    *("あのー", "あのう", "あの", "あー", "そのー", "その", "まあ", "まー"),
    *("うーん", "うー", "んー", "ん"),
)
# What a caller says after a group of digits when the number goes on (「090です、1234です」,
# 「090、はい、1234」): a group read out and confirmed, not the end of the number.
CONTINUATIONS = ("ですね", "です", "になります", "はい", "うん", "それで", "で", "ね")
# Both kinds, longest first: what masking's patterns take for "the number goes on".
PAUSE_WORDS = tuple(sorted({*FILLERS, *CONTINUATIONS}, key=len, reverse=True))
# Between two groups of digits only (「090と1234と5678」): a list of groups, one number.
GROUP_JOINERS = frozenset("と")
SENTENCE_ENDS = frozenset("。．？！?!")

# -- characters ------------------------------------------------------------------------------
_KANJI_DIGITS = {
    **dict.fromkeys("〇○◯零", "0"),
    **dict.fromkeys("一壱壹弌", "1"),
    **dict.fromkeys("二弐貳弍", "2"),
    **dict.fromkeys("三参參弎", "3"),
    **dict.fromkeys("四肆", "4"),
    **dict.fromkeys("五伍", "5"),
    **dict.fromkeys("六陸", "6"),
    **dict.fromkeys("七漆柒", "7"),
    **dict.fromkeys("八捌", "8"),
    **dict.fromkeys("九玖", "9"),
}
_KANJI_MULTIPLIERS = {**dict.fromkeys("十拾什", 10), **dict.fromkeys("百佰陌", 100)}
_KANJI_MULTIPLIERS |= dict.fromkeys("千仟阡", 1000)
# Separators between the groups of one number (after width folding). Characters that
# show nothing (Unicode Cf and Mn/Me: zero-width space, soft hyphen, direction marks,
# variation selectors, combining accents, keycaps) are dropped before this, and every
# Unicode space becomes an ASCII one.
_SEPARATORS = frozenset(" \t\n\r-ー－‐‑‒–—―−﹣のノ、,，.．・･()（）/／")
_SEPARATORS |= frozenset("~〜～_＿*＊=＝+＋[]［］「」『』｢｣")
_DASHES = frozenset("－‐‑‒–—―−﹣")
_SMALL_KANA = frozenset("ゃゅょぁぃぅぇぉゎャュョァィゥェォヮ")
# Kanji that make a lone numeral a number: 一月, 三番, 十日 (but not 一緒, 千葉, 九州).
NUMERIC_MARKERS = frozenset("年月日時分秒番号丁円万億兆回件人歳才期度階条枚個通本%％")

# -- kana readings ---------------------------------------------------------------------------
# kind: D digit, W weak digit (a particle far more often: に, し, く, ご, よ), M multiplier,
# G geminate digit (いっ, ろっ, はっ: only before a multiplier), K marker after a number,
# E era name, Y day of the month (only after 月).
_READINGS: dict[str, tuple[str, str | int]] = {}


def _add(kind: str, value: str | int, *spellings: str) -> None:
    for s in spellings:
        _READINGS[s] = (kind, value)
        katakana = "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in s)
        _READINGS.setdefault(katakana, (kind, value))


_add("D", "0", "ぜろ", "れい", "まる", "おー")
_add("D", "1", "いち")
_add("D", "2", "にー", "にい")
_add("W", "2", "に")
_add("D", "3", "さん")
_add("D", "4", "よん", "よー")
_add("W", "4", "し", "よ")
_add("D", "5", "ごー", "ごう")
_add("W", "5", "ご")
_add("D", "6", "ろく")
_add("D", "7", "なな", "しち")
_add("D", "8", "はち")
_add("D", "9", "きゅう", "きゅー")
_add("W", "9", "く")
_add("G", "1", "いっ")
_add("G", "6", "ろっ")
_add("G", "8", "はっ")
_add("M", 10, "じゅう", "じゅー")
_add("M", 100, "ひゃく", "びゃく", "ぴゃく")
_add("M", 1000, "せん", "ぜん")
_add("K", "年", "ねん")
_add("K", "月", "がつ")
_add("K", "日", "にち")
_add("K", "丁目", "ちょうめ")
_add("K", "番地", "ばんち")
_add("K", "番", "ばん")
_add("K", "号", "ごう")
_add("K", "号室", "ごうしつ")
_add("E", "明治", "めいじ")
_add("E", "大正", "たいしょう")
_add("E", "昭和", "しょうわ")
_add("E", "平成", "へいせい")
_add("E", "令和", "れいわ")
_add("Y", "1", "ついたち")
_add("Y", "2", "ふつか")
_add("Y", "3", "みっか")
_add("Y", "4", "よっか")
_add("Y", "5", "いつか")
_add("Y", "6", "むいか")
_add("Y", "7", "なのか")
_add("Y", "8", "ようか")
_add("Y", "9", "ここのか")
_add("Y", "10", "とおか")
_add("Y", "20", "はつか")


@lru_cache(maxsize=8192)
def _char(c: str) -> tuple[str, str]:
    """(class, canonical text) of one character.

    Classes: "d" digit(s), "m" multiplier (value as text), "k" kana (may start a reading),
    "s" separator, "o" anything else. Width variants are folded (full-width letters and
    digits, half-width katakana, circled and superscript digits, other scripts' digits).
    """
    if c in _KANJI_DIGITS:
        return "d", _KANJI_DIGITS[c]
    if c in _KANJI_MULTIPLIERS:
        return "m", str(_KANJI_MULTIPLIERS[c])
    value = unicodedata.decimal(c, None)
    if value is None:
        value = unicodedata.digit(c, None)
    if value is not None:
        return "d", str(value)
    if c in _DASHES:
        return "s", "-"
    if c in _SEPARATORS:
        return "s", c
    category = unicodedata.category(c)
    if category == "Zs":
        return "s", " "  # U+3000, no-break and other spaces: RE2's \s is ASCII only
    if category in ("Zl", "Zp"):
        return "s", "\n"
    if "ぁ" <= c <= "ゖ" or "ァ" <= c <= "ヺ":
        return "k", c
    folded = unicodedata.normalize("NFKC", c) if ord(c) >= 0x2000 else c
    if folded != c:
        if folded.isdigit() and folded.isascii():
            return "d", folded
        if len(folded) == 1:
            return _char(folded)
        return "o", folded
    return "o", c


# -- tokens ----------------------------------------------------------------------------------
_NUMERAL_KINDS = frozenset("DWMGY")


@dataclass(slots=True)
class _Token:
    kind: str  # D digit, W weak digit, M multiplier, G geminate, Y day; K marker, E era,
    #            S separator, O other
    value: str  # digit(s), multiplier, or canonical text
    start: int  # span in the original text
    end: int
    script: str = "o"  # "a" digit of any script but kanji, "j" kanji numeral, "k" kana


@dataclass(frozen=True, slots=True)
class DigitRun:
    """Digits of one number, possibly in several groups (090-1234-5678 is 3 groups)."""

    start: int  # span in the canonical text
    end: int
    digits: str
    groups: tuple[int, ...]  # digits per group


@dataclass(slots=True)
class Canonical:
    """The canonical text of an utterance, with the way back to the original."""

    original: str
    text: str
    starts: list[int]  # for each canonical character, where its source begins ...
    ends: list[int]  # ... and ends in the original
    runs: list[DigitRun]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the canonical span [start, end)."""
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else len(self.original)
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def _tokens(text: str) -> list[_Token]:
    """Characters and kana readings; numerals recognised but not yet decided."""
    out: list[_Token] = []
    n = len(text)
    i = 0
    last_numeral = False  # the previous token was a numeral (for markers: 3ねん)
    after_month = False  # the previous token was 月 (for days: 3月ふつか)
    while i < n:
        kind, canon, script = _char_token(text[i])
        token: _Token | None = None
        if kind == "k" and text[i] in _READING_STARTS:
            token = _reading(text, i, n, last_numeral, after_month, out)
        if token is None:
            token = _Token("O" if kind == "k" else kind, canon, i, i + 1, script)
        out.append(token)
        i = token.end
        if token.kind == "S" and token.value.isspace():
            continue
        last_numeral = token.kind in _NUMERAL_KINDS
        after_month = token.value == "月"
    return out


# For each character a reading starts with, the lengths of those readings, longest first.
_READING_LENGTHS: dict[str, tuple[int, ...]] = {}
for _s in _READINGS:
    _READING_LENGTHS[_s[0]] = tuple(sorted({*_READING_LENGTHS.get(_s[0], ()), len(_s)}))[::-1]
_READING_STARTS = frozenset(_READING_LENGTHS)


@lru_cache(maxsize=8192)
def _char_token(c: str) -> tuple[str, str, str]:
    """(token kind, canonical text, script) of one character on its own."""
    cls, canon = _char(c)
    if cls == "d":
        return "D", canon, "j" if c in _KANJI_DIGITS else "a"
    if cls == "m":
        return "M", canon, "j"
    return {"s": "S", "k": "k"}.get(cls, "O"), canon, "o"


def _reading(
    text: str, i: int, n: int, last_numeral: bool, after_month: bool, out: list[_Token]
) -> _Token | None:
    """The longest kana reading at ``i`` that fits its context, or None."""
    for length in _READING_LENGTHS[text[i]]:
        if i + length > n:
            continue
        entry = _READINGS.get(text[i : i + length])
        if entry is None:
            continue
        end = i + length
        if end < n and text[end] in _SMALL_KANA:
            continue  # シャ, ニュ: another syllable
        if length > 1 and _splits_next_reading(text, i, end, n):
            continue  # ニイチ is ニ イチ (2 1), not ニイ チ
        kind, value = entry
        if kind == "K" and not last_numeral:
            continue
        if value == "号" and _kana_digit_before(out) and _digit_reading_at(text, end, n):
            return _Token("D", "5", i, end, "k")  # いちごうろく: 1 5 6, not 1号 6
        if kind == "Y" and not (after_month or (value != "10" and value != "20" and _tens(out))):
            continue
        if kind == "G" and not _multiplier_at(text, end, n):
            continue
        return _Token(kind, str(value), i, end, "k")
    return None


def _splits_next_reading(text: str, i: int, end: int, n: int) -> bool:
    """Whether the reading text[i:end] ends with the first character of a digit reading
    that starts there, while text[i:end-1] is a reading on its own (にい|ち vs に|いち)."""
    if text[i : end - 1] not in _READINGS or text[end - 1] not in _READING_STARTS:
        return False
    for length in _READING_LENGTHS[text[end - 1]]:
        if length > 1 and end - 1 + length <= n:
            entry = _READINGS.get(text[end - 1 : end - 1 + length])
            if entry is not None and entry[0] == "D":
                return True
    return False


def _kana_digit_before(out: list[_Token]) -> bool:
    return bool(out) and out[-1].script == "k" and out[-1].kind in "DW"


def _digit_reading_at(text: str, i: int, n: int) -> bool:
    """Whether a kana digit reading (not a particle-like one) starts at ``i``."""
    for length in _READING_LENGTHS.get(text[i], ()) if i < n else ():
        entry = _READINGS.get(text[i : i + length])
        if entry is not None and entry[0] == "D" and i + length <= n:
            return True
    return False


def _tens(out: list[_Token]) -> bool:
    return bool(out) and out[-1].kind == "M" and out[-1].value == "10"


def _multiplier_at(text: str, i: int, n: int) -> bool:
    for length in (3, 2):
        entry = _READINGS.get(text[i : i + length])
        if entry is not None and entry[0] == "M":
            return True
    return False


# -- words: numerals next to each other ------------------------------------------------------
@dataclass(slots=True)
class _Word:
    first: int  # token indexes [first, last)
    last: int
    numeric: bool = False
    candidate: bool = False  # a lone numeral: a number only next to another number


def _words(tokens: list[_Token]) -> list[_Word]:
    words: list[_Word] = []
    n = len(tokens)
    i = 0
    while i < n:
        if tokens[i].kind not in _NUMERAL_KINDS:
            i += 1
            continue
        j = i + 1
        while j < n and tokens[j].kind in _NUMERAL_KINDS and not _apart(tokens, j):
            j += 1
        words.append(_decide(tokens, _Word(i, j)))
        i = j
    return words


def _apart(tokens: list[_Token], j: int) -> bool:
    """Whether tokens j-1 and j, both numerals, belong to different numbers.

    A particle-like kana digit (に, し, く, ご) right after or before a digit in another
    script is a particle (090に, 5678にお願い), not a digit of the same number; between
    two digits of another script it is a digit (1234ゴ5678, 090ニ1234).
    """
    a, b = tokens[j - 1], tokens[j]
    if a.script == b.script or (a.kind != "W" and b.kind != "W"):
        return False
    if b.kind == "W":
        other = tokens[j + 1] if j + 1 < len(tokens) else None
    else:
        other = tokens[j - 2] if j >= 2 else None
    return not (other is not None and other.kind in _NUMERAL_KINDS and other.kind != "W")


def _after_address_marker(tokens: list[_Token], i: int) -> bool:
    """Whether the token before ``i`` (across の or a hyphen) ends an address part: the
    二 of 五番地の二, 三丁目の二."""
    k = i - 1
    if k >= 0 and tokens[k].kind == "S" and not tokens[k].value.isspace():
        k -= 1
    return k >= 0 and tokens[k].kind in "KO" and tokens[k].value[-1:] in "番地目号"


def _decide(tokens: list[_Token], word: _Word) -> _Word:
    """Whether adjacent numerals are a number: 090, 一九六〇, よんじゅうご, さんがつ are;
    に (a particle), 一 of 一緒, 千 of 千葉 are not, unless next to another number."""
    parts = tokens[word.first : word.last]
    after = tokens[word.last] if word.last < len(tokens) else None
    before = tokens[word.first - 1] if word.first > 0 else None
    marked = after is not None and (
        after.kind == "K" or (after.kind == "O" and after.value[:1] in NUMERIC_MARKERS)
    )
    prefixed = before is not None and (before.kind == "E" or before.value == "第")
    prefixed = prefixed or _after_address_marker(tokens, word.first)
    weak = sum(1 for t in parts if t.kind == "W")
    count = len(parts)
    several = count >= 2 and (weak < count or count >= 3)  # ごご, にし: two particles
    plain = any(t.script == "a" for t in parts)
    if marked or prefixed or several or plain or parts[-1].kind == "Y":
        word.numeric = True
    elif count == 1 and parts[0].kind in "DM":
        word.candidate = True
    return word


def _word_digits(parts: list[_Token]) -> str:
    """The digits a numeral word stands for: 千二百三十四 → 1234, 〇九〇 → 090."""
    if not any(t.kind == "M" for t in parts):
        return "".join(t.value for t in parts)  # digit by digit: no positional numeral
    out: list[str] = []
    n = len(parts)
    i = 0
    while i < n:
        j, value = _positional(parts, i)
        if j > i:
            out.append(str(value))
            i = j
        else:
            out.append(parts[i].value)
            i += 1
    return "".join(out)


def _single_digit(t: _Token) -> int:
    """1-9 for a token that can stand before a multiplier, else 0."""
    if t.kind in "DWGY" and len(t.value) == 1 and t.value != "0":
        return int(t.value)
    return 0


def _positional(parts: list[_Token], i: int) -> tuple[int, int]:
    """A positional numeral at ``i`` (二千二十四, さんびゃく): (end index, value), or (i, 0)."""
    n = len(parts)
    if parts[i].kind != "M" and not (i + 1 < n and parts[i + 1].kind == "M"):
        return i, 0
    total = 0
    j = i
    for place in (1000, 100, 10):
        digit = _single_digit(parts[j]) if j < n else 0
        k = j + 1 if digit else j
        if k < n and parts[k].kind == "M" and int(parts[k].value) == place:
            total += (digit or 1) * place
            j = k + 1
    if j == i:
        return i, 0
    if j < n and _single_digit(parts[j]):
        following_multiplier = j + 1 < n and parts[j + 1].kind == "M"
        if not following_multiplier:
            total += int(parts[j].value)
            j += 1
    return j, total


# -- the canonical text ----------------------------------------------------------------------
def canonical(text: str) -> Canonical:
    """The canonical form of ``text`` (see the module docstring) and its digit runs."""
    original = text
    text, sources = _fold(text)
    tokens = _tokens(text)
    words = _words(tokens)
    joins = _resolve(text, tokens, words)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    runs: list[DigitRun] = []

    def emit(piece: str, start: int, end: int) -> None:
        out.append(piece)
        if len(piece) == 1:
            starts.append(start)
            ends.append(end)
        else:
            starts.extend([start] * len(piece))
            ends.extend([end] * len(piece))

    word_at = {w.first: w for w in words if w.numeric}
    run_start = -1
    run_digits: list[str] = []
    groups: list[int] = []
    i = 0
    n = len(tokens)
    pos = 0  # canonical length so far
    while i < n:
        word = word_at.get(i)
        if word is not None:
            parts = tokens[word.first : word.last]
            digits = _word_digits(parts)
            if run_start < 0:
                run_start = pos
            emit(digits, parts[0].start, parts[-1].end)
            pos += len(digits)
            run_digits.append(digits)
            groups.append(len(digits))
            if parts[-1].kind == "Y":
                emit("日", parts[-1].start, parts[-1].end)
                pos += 1
            i = word.last
            gap_end = joins.get(word.first)
            if gap_end is not None and parts[-1].kind != "Y":
                emit(JOIN, tokens[i].start, tokens[gap_end - 1].end)
                pos += 1
                i = gap_end
                continue
            runs.append(DigitRun(run_start, pos, "".join(run_digits), tuple(groups)))
            run_start = -1
            run_digits.clear()
            groups.clear()
            continue
        t = tokens[i]
        piece = t.value if t.kind in "KESO" else text[t.start : t.end]
        if len(piece) == 1:  # most characters: inline, not through emit()
            out.append(piece)
            starts.append(t.start)
            ends.append(t.end)
            pos += 1
        else:
            emit(piece, t.start, t.end)
            pos += len(piece)
        i += 1
    if sources is not None:
        starts = [sources[s][0] for s in starts]
        ends = [sources[e - 1][1] for e in ends]
    return Canonical(original, "".join(out), starts, ends, runs)


# What the first pass rewrites: half-width katakana, and characters that show nothing.
_TO_FOLD = re2.compile(r"[\x{ff61}-\x{ff9f}\p{Cf}\p{Mn}\p{Me}]")
_INVISIBLE = frozenset(("Cf", "Mn", "Me"))


def _fold(text: str) -> tuple[str, list[tuple[int, int]] | None]:
    """Half-width katakana as full-width (ｾﾞﾛ → ゼロ, two characters into one), and the
    characters that show nothing dropped (a soft hyphen, a direction mark or a combining
    accent between or on digits must not hide them); a combining mark goes with the
    character before it, composed with it where it makes one (か + ゛). Returns the
    original span of each folded character; ``None`` when there is nothing to fold."""
    if _TO_FOLD.search(text) is None:
        return text, None
    out: list[str] = []
    sources: list[tuple[int, int]] = []
    n = len(text)
    i = 0
    while i < n:
        width = 1
        c = text[i]
        if "\uff61" <= c <= "\uff9f":
            if i + 1 < n and text[i + 1] in "\uff9e\uff9f":
                width = 2 if len(unicodedata.normalize("NFKC", text[i : i + 2])) == 1 else 1
            folded = unicodedata.normalize("NFKC", text[i : i + width])
        elif (category := unicodedata.category(c)) in _INVISIBLE:
            if out and category != "Cf":  # a mark belongs to the character before it
                composed = unicodedata.normalize("NFC", out[-1] + c)
                if len(composed) == 1:
                    out[-1] = composed
                sources[-1] = (sources[-1][0], i + 1)
            i += 1
            continue
        else:
            folded = c
        for ch in folded:
            out.append(ch)
            sources.append((i, i + width))
        i += width
    return "".join(out), sources


def _resolve(text: str, tokens: list[_Token], words: list[_Word]) -> dict[int, int]:
    """Decide lone numerals by their neighbours and join the groups of each number.

    Returns, for each numeric word (by its first token) that continues after a separator
    (or a hesitation: 090えーと1234), the token index where the next group begins.
    """
    links: list[int | None] = []  # for each word, the token index of the next word if linked
    for k, word in enumerate(words):
        nxt = words[k + 1] if k + 1 < len(words) else None
        linked = None
        if nxt is not None and nxt.first > word.last:
            gap = tokens[word.last : nxt.first]
            width = gap[-1].end - gap[0].start
            if all(t.kind == "S" for t in gap):
                linked = nxt.first if width <= MAX_SEPARATOR_CHARS else None
            elif (
                _joined_groups(tokens, word, nxt, gap)
                or (
                    width <= MAX_FILLER_GAP_CHARS
                    and not any(t.kind in "KE" for t in gap)  # ねん is 年, not ね ん
                    and is_pause(text[gap[0].start : gap[-1].end])
                )
            ):
                linked = nxt.first
        links.append(linked)
    # A chain of linked words is a number if it has a number in it, or two lone numerals;
    # then a particle-like kana digit inside it (090、ゴ、1234) is one of its digits.
    k = 0
    while k < len(words):
        m = k
        while links[m] is not None:
            m += 1
        chain = words[k : m + 1]
        if len(chain) > 1 and sum(1 for w in chain if w.numeric or w.candidate) >= 2:
            for w in chain:
                if w.candidate:
                    w.numeric = True
            for w in chain[1:-1]:
                w.numeric = True
        k = m + 1
    joins: dict[int, int] = {}
    for k, word in enumerate(words):
        nxt_first = links[k]
        if word.numeric and nxt_first is not None and words[k + 1].numeric:
            joins[word.first] = nxt_first
    return joins


def _joined_groups(tokens: list[_Token], word: _Word, nxt: _Word, gap: list[_Token]) -> bool:
    """Two groups of at least two digits with only と between them (090と1234)."""
    words = [t for t in gap if t.kind != "S"]
    return (
        len(words) == 1
        and words[0].value in GROUP_JOINERS
        and len(gap) <= MAX_SEPARATOR_CHARS
        and word.last - word.first >= 2
        and nxt.last - nxt.first >= 2
    )


_FILLERS_LONGEST_FIRST = PAUSE_WORDS
_FILLER_STARTS = frozenset(f[0] for f in PAUSE_WORDS)
_LENGTHENINGS = frozenset("ー〜～")
# What a pause can begin and end with: a separator, or a filler's first or last character.
_PAUSE_EDGES = frozenset(c for f in PAUSE_WORDS for c in (f[0], f[-1]))
_PAUSE_EDGES |= {chr(ord(c) + 0x60) for c in _PAUSE_EDGES if "ぁ" <= c <= "ゖ"}  # katakana
_PAUSE_EDGES |= _SEPARATORS | _DASHES | _LENGTHENINGS


def is_pause(gap: str, *, across_sentences: bool = False) -> bool:
    """Whether ``gap`` holds only separators, hesitations and words that say the number
    goes on (「、えーと、」, 「 あのー 」, 「エー」, 「です、」, 「、はい、」): what a caller
    says between two groups of one number. With ``across_sentences``, a sentence end
    (「です。」) is one of the separators. Linear in the gap: each position tries each
    word once."""
    if gap and (
        (gap[0] not in _PAUSE_EDGES and not (across_sentences and gap[0] in SENTENCE_ENDS))
        or (gap[-1] not in _PAUSE_EDGES and not (across_sentences and gap[-1] in SENTENCE_ENDS))
    ):
        return False  # most gaps between numbers: 年, 月, 丁目, から
    folded = [
        chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else "ー" if c in _LENGTHENINGS else c for c in gap
    ]
    # A lengthened vowel is one: えーーと and え〜と are えーと.
    text = "".join(
        c for i, c in enumerate(folded) if not (c == "ー" and i and folded[i - 1] == "ー")
    )
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in _FILLER_STARTS:
            for filler in _FILLERS_LONGEST_FIRST:
                if text.startswith(filler, i):
                    i += len(filler)
                    break
            else:
                return False
        elif _char(c)[0] == "s" or (across_sentences and c in SENTENCE_ENDS):
            i += 1
        else:
            return False
    return True
