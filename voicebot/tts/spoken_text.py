"""Rewrite text into what the synthesiser should read aloud: numbers become kana readings.

Kokoro's Japanese front end turns each digit run into kana on its own and then lets the
morphological analyser guess the counter, so 6月30日 comes out as "ろくつき さんじゅう び" and
年4回 as "とし よんかい". The caller hears nonsense exactly where the facts are (dates, fees,
deadlines). This module writes every number with its counter as the reading a person would
say, before synthesis, so the engine only has to pronounce kana.

Readings are hiragana, and each one is set off by spaces so that the analyser keeps it
whole (a bare "ななはち" would be split into particles). Readings that the analyser still
mangles in hiragana are written in katakana, which it reads literally: digit-by-digit phone
numbers and パーセント.

A short list of words the analyser misreads in the FAQ (納期限 as おさめきげん, 方 as ほう
where a person is meant) is fixed the same way, after the numbers.

Bump `SPOKEN_TEXT_VERSION` whenever a rule changes what is spoken: it is part of the
speech-cache key, so rendered audio of the old readings is not reused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

SPOKEN_TEXT_VERSION = 1

_DIGIT = ("ぜろ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう")

# Powers of ten inside a group of four digits: (1000, 100, 10) with their sound changes.
_THOUSANDS = {1: "せん", 3: "さんぜん", 8: "はっせん"}
_HUNDREDS = {1: "ひゃく", 3: "さんびゃく", 6: "ろっぴゃく", 8: "はっぴゃく"}
_LARGE_UNITS = ((10**12, "ちょう"), (10**8, "おく"), (10**4, "まん"))

MONTHS = {
    1: "いちがつ",
    2: "にがつ",
    3: "さんがつ",
    4: "しがつ",
    5: "ごがつ",
    6: "ろくがつ",
    7: "しちがつ",
    8: "はちがつ",
    9: "くがつ",
    10: "じゅうがつ",
    11: "じゅういちがつ",
    12: "じゅうにがつ",
}

# Days of the month (and day counts) that do not follow "number + にち".
_DAY_WHOLE = {
    1: "ついたち",
    2: "ふつか",
    3: "みっか",
    4: "よっか",
    5: "いつか",
    6: "むいか",
    7: "なのか",
    8: "ようか",
    9: "ここのか",
    10: "とおか",
    14: "じゅうよっか",
    20: "はつか",
    24: "にじゅうよっか",
}
_DAY_LAST_DIGIT = {4: "よっか", 7: "しちにち", 9: "くにち"}

# Digits as said in phone numbers: short ones are lengthened so each digit is heard.
# Katakana, because the analyser regroups hiragana digits (ななはち -> な な は ち).
_PHONE_DIGIT = ("ゼロ", "イチ", "ニー", "サン", "ヨン", "ゴー", "ロク", "ナナ", "ハチ", "キュー")


def _group_reading(n: int) -> str:
    """Reading of 1..9999 (empty for 0)."""
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    tens, ones = divmod(rest, 10)
    parts = []
    if thousands:
        parts.append(_THOUSANDS.get(thousands, _DIGIT[thousands] + "せん"))
    if hundreds:
        parts.append(_HUNDREDS.get(hundreds, _DIGIT[hundreds] + "ひゃく"))
    if tens:
        parts.append(("" if tens == 1 else _DIGIT[tens]) + "じゅう")
    if ones:
        parts.append(_DIGIT[ones])
    return "".join(parts)


def integer_reading(n: int) -> str:
    """Kana reading of a non-negative integer, grouped by まん / おく / ちょう."""
    if n < 0:
        raise ValueError(f"no reading for negative numbers: {n}")
    if n == 0:
        return _DIGIT[0]
    parts = []
    for unit, name in _LARGE_UNITS:
        count, n = divmod(n, unit)
        if not count:
            continue
        if name == "ちょう" and count in (1, 8, 10):
            parts.append({1: "いっ", 8: "はっ", 10: "じゅっ"}[count] + name)
        elif count // 1000 == 1:
            parts.append("いっ" + _group_reading(count) + name)  # 1000万 = いっせんまん
        else:
            parts.append(_group_reading(count) + name)
    if n:
        parts.append(_group_reading(n))
    return "".join(parts)


@dataclass(frozen=True)
class Counter:
    """How a counter word is read after a number.

    `last` holds the irregular forms for the last digit (keys 1-9) and for a final ten
    (key 10, as in 30分 = さんじゅっぷん); `whole` holds irregular readings of whole numbers
    (1人 = ひとり but 21人 = にじゅういちにん).
    """

    reading: str
    last: Mapping[int, str] = field(default_factory=dict)
    whole: Mapping[int, str] = field(default_factory=dict)

    def read(self, n: int) -> str:
        """The reading of `n` followed by this counter."""
        if n in self.whole:
            return self.whole[n]
        ones = n % 10
        if ones and ones in self.last:
            return _head(n - ones) + self.last[ones]
        if not ones and n % 100 and 10 in self.last:
            tens = (n % 100) // 10
            return _head(n - n % 100) + ("" if tens == 1 else _DIGIT[tens]) + self.last[10]
        return integer_reading(n) + self.reading


def _head(n: int) -> str:
    return integer_reading(n) if n else ""


def _geminated(reading: str) -> dict[int, str]:
    """Forms for counters starting with k/s/t/p sounds: いっ-, ろっ-, はっ-, じゅっ-."""
    return {1: "いっ" + reading, 6: "ろっ" + reading, 8: "はっ" + reading, 10: "じゅっ" + reading}


_KAGETSU = Counter("かげつ", _geminated("かげつ"))
_SHUUKAN = Counter("しゅうかん", {1: "いっしゅうかん", 8: "はっしゅうかん", 10: "じゅっしゅうかん"})
_FUN = Counter(
    "ふん",
    {1: "いっぷん", 3: "さんぷん", 4: "よんぷん", 6: "ろっぷん", 8: "はっぷん", 10: "じゅっぷん"},
)
_HOUR = Counter("じ", {4: "よじ", 7: "しちじ", 9: "くじ"})
_DAYS = Counter("にち", _DAY_LAST_DIGIT, {**_DAY_WHOLE, 1: "いちにち"})

# Counter words as written -> reading (the regex tries the longest first: 年度分 before 年).
COUNTERS: dict[str, Counter] = {
    "か月間": Counter("かげつかん", _geminated("かげつかん")),
    "ヶ月間": Counter("かげつかん", _geminated("かげつかん")),
    "カ月間": Counter("かげつかん", _geminated("かげつかん")),
    "か月": _KAGETSU,
    "ヶ月": _KAGETSU,
    "カ月": _KAGETSU,
    "ケ月": _KAGETSU,
    "年度分": Counter("ねんどぶん", {4: "よねんどぶん", 9: "きゅうねんどぶん"}),
    "年度": Counter("ねんど", {4: "よねんど", 9: "きゅうねんど"}),
    "年分": Counter("ねんぶん", {4: "よねんぶん", 9: "きゅうねんぶん"}),
    "年間": Counter("ねんかん", {4: "よねんかん", 9: "きゅうねんかん"}),
    "年": Counter("ねん", {4: "よねん", 9: "きゅうねん"}),
    "週間": _SHUUKAN,
    "日間": Counter(
        "にちかん",
        {4: "よっかかん", 7: "しちにちかん", 9: "くにちかん"},
        {k: v + "かん" for k, v in {**_DAY_WHOLE, 1: "いちにち"}.items()},
    ),
    "日": _DAYS,
    "時間": Counter("じかん", {4: "よじかん", 7: "しちじかん", 9: "くじかん"}),
    "分間": Counter("ふんかん", {k: v + "かん" for k, v in _FUN.last.items()}),
    "分": _FUN,
    "秒": Counter("びょう"),
    "通": Counter("つう", {1: "いっつう", 8: "はっつう", 10: "じゅっつう"}),
    "円": Counter("えん", {4: "よえん"}),
    "回": Counter("かい", _geminated("かい")),
    "階建て": Counter("かいだて", {**_geminated("かいだて"), 3: "さんがいだて"}),
    "階": Counter("かい", {**_geminated("かい"), 3: "さんがい"}),
    "歳": Counter("さい", {1: "いっさい", 8: "はっさい", 10: "じゅっさい"}, {20: "はたち"}),
    "才": Counter("さい", {1: "いっさい", 8: "はっさい", 10: "じゅっさい"}, {20: "はたち"}),
    "台": Counter("だい"),
    "枚": Counter("まい"),
    "団体": Counter("だんたい"),
    "人": Counter("にん", {}, {1: "ひとり", 2: "ふたり", 4: "よにん"}),
    "名": Counter("めい"),
    "件": Counter("けん", _geminated("けん")),
    "軒": Counter("けん", {**_geminated("けん"), 3: "さんげん"}),
    "個": Counter("こ", _geminated("こ")),
    "社": Counter("しゃ", {1: "いっしゃ", 8: "はっしゃ", 10: "じゅっしゃ"}),
    "期": Counter("き", _geminated("き")),
    "番": Counter("ばん"),
    "号": Counter("ごう"),
    "倍": Counter("ばい"),
    "割": Counter("わり"),
    "点": Counter("てん", {1: "いってん", 8: "はってん", 10: "じゅってん"}),
    "つ": Counter(
        "つ",
        {},
        {
            1: "ひとつ",
            2: "ふたつ",
            3: "みっつ",
            4: "よっつ",
            5: "いつつ",
            6: "むっつ",
            7: "ななつ",
            8: "やっつ",
            9: "ここのつ",
            10: "とお",
        },
    ),
    "%": Counter("パーセント", _geminated("パーセント")),
    "パーセント": Counter("パーセント", _geminated("パーセント")),
}


def month_reading(month: int) -> str:
    """いちがつ … じゅうにがつ (しがつ, しちがつ, くがつ); other numbers read plainly."""
    return MONTHS.get(month) or integer_reading(month) + "がつ"


def day_of_month_reading(day: int) -> str:
    """ついたち, ふつか … とおか, じゅうよっか, はつか, にじゅうよっか; otherwise + にち."""
    if day in _DAY_WHOLE:
        return _DAY_WHOLE[day]
    return Counter("にち", _DAY_LAST_DIGIT).read(day)


def hour_reading(hour: int) -> str:
    """Clock hour: よじ, しちじ, くじ are the irregular ones."""
    return _HOUR.read(hour)


def minute_reading(minute: int) -> str:
    """Minutes: いっぷん, さんぷん, ろっぷん, じゅっぷん … as in 30分 = さんじゅっぷん."""
    return _FUN.read(minute)


def phone_number_reading(number: str) -> str:
    """Digit by digit, the dash read as の: 078-123-4567 -> ゼロナナハチの イチニーサンの …"""
    groups = re.findall(r"\d+", number)
    return "の ".join("".join(_PHONE_DIGIT[int(d)] for d in g) for g in groups)


def decimal_reading(number: str) -> str:
    """1.5 -> いってんご: the integer part, てん, then each decimal digit."""
    whole, _, fraction = number.partition(".")
    head = COUNTERS["点"].read(int(whole))
    return head + "".join(_DIGIT[int(d)] for d in fraction)


# --- the rewriting rules ---------------------------------------------------------------

_NUM = r"\d+(?:,\d{3})*"  # digits with optional thousands separators
_MULTIPLIERS = {"兆": 10**12, "億": 10**8, "万": 10**4}
# A number as written, with 兆/億/万 multipliers: 50, 1,000, 150万, 1億2000万.
_NUMBER = rf"{_NUM}(?:[兆億万](?:{_NUM})?)*"
# Counters that make no sense after a per-year 年 (前の年1年間 is "the year before, 1 year").
_NOT_PER_YEAR = frozenset({"年", "年間", "年度", "年分", "年度分"})
# 年/月 right after a word or の belongs to it (翌年, 前の年, その月), not to the number.
_PART_OF_WORD = re.compile(r"[\u4e00-\u9fff々の]")

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _parse_number(text: str) -> int:
    """Value of a number written with digits and 兆/億/万, e.g. 1億2000万 -> 120000000."""
    total = 0
    for digits, unit in re.findall(r"(\d[\d,]*)([兆億万]?)", text):
        value = int(digits.replace(",", ""))
        total += value * _MULTIPLIERS[unit] if unit else value
    return total


def _spaced(reading: str) -> str:
    """Spaces keep the analyser from merging a reading with the words around it."""
    return f" {reading} "


def _phone(m: re.Match[str]) -> str:
    return _spaced(phone_number_reading(m[0]))


def _time(m: re.Match[str]) -> str:
    ampm = {"午前": "ごぜん ", "午後": "ごご "}.get(m["ampm"] or "", "")
    hour = hour_reading(int(m["hour"]))
    minute = m["minute"] or m["clock_minute"]
    if m["half"]:
        return _spaced(f"{ampm}{hour} はん")
    if minute is None or (m["clock_minute"] and int(minute) == 0):
        return _spaced(ampm + hour)
    return _spaced(f"{ampm}{hour} {minute_reading(int(minute))}")


def _date(m: re.Match[str]) -> str:
    parts = []
    if m["year"]:
        parts.append(COUNTERS["年"].read(int(m["year"])))
    parts.append(month_reading(int(m["month"])) + ("まつ" if m["end"] else ""))
    if m["day"]:
        parts.append(day_of_month_reading(int(m["day"])))
    return _spaced(" ".join(parts))


def _fraction(m: re.Match[str]) -> str:
    return _spaced(f"{integer_reading(int(m[1]))}ぶんの {integer_reading(int(m[2]))}")


def _decimal(m: re.Match[str]) -> str:
    counter = COUNTERS[m["counter"]].reading if m["counter"] else ""
    return _spaced(decimal_reading(m["number"]) + counter)


def _counted(m: re.Match[str]) -> str:
    value, counter, prefix = _parse_number(m["number"]), m["counter"], m["prefix"]
    reading = COUNTERS[counter].read(value)
    if prefix == "第":
        return _spaced("だい" + reading)
    after_word = m.start() > 0 and _PART_OF_WORD.match(m.string[m.start() - 1])
    if prefix == "月":
        # 毎月1日 / 翌月10日 are days of the month; a bare 月2回 is "per month".
        if counter == "日":
            reading = day_of_month_reading(value)
        return ("月" if after_word else " つき") + _spaced(reading)
    if prefix == "年":
        # 年4回, 年18万円: per year; 翌年1回, 前の年1年間: the 年 belongs to the word before.
        per_year = counter not in _NOT_PER_YEAR and not after_word
        return (" ねん" if per_year else "年") + _spaced(reading)
    return _spaced(reading)


def _plain(m: re.Match[str]) -> str:
    return _spaced(integer_reading(_parse_number(m[0])))


_COUNTER_ALTERNATION = "|".join(re.escape(c) for c in sorted(COUNTERS, key=len, reverse=True))

RULES: tuple[Rule, ...] = (
    # 078-123-4567, 0120-12-3456: phone numbers start with 0 and have three dashed groups.
    (re.compile(r"(?<![\d-])0\d{1,4}-\d{1,4}-\d{3,4}(?![\d-])"), _phone),
    # 午前8時45分, 午後5時半, 8時, 17:30 (not 2時間)
    (
        re.compile(
            r"(?P<ampm>午前|午後)?(?P<hour>\d{1,2})"
            r"(?:時(?:(?P<half>半)|(?P<minute>\d{1,2})分(?!間))?(?![間点])"
            r"|:(?P<clock_minute>\d{2})(?!\d))"
        ),
        _time,
    ),
    # 2024年4月1日, 6月30日, 4月, 5月末 (not 3月間)
    (
        re.compile(
            r"(?:(?P<year>\d{1,4})年)?(?P<month>\d{1,2})月(?!間)"
            r"(?:(?P<day>\d{1,2})日(?!間)|(?P<end>末))?"
        ),
        _date,
    ),
    # 2分の1
    (re.compile(r"(\d+)分の(\d+)"), _fraction),
    # 1.5%, 0.5
    (re.compile(rf"(?P<number>\d+\.\d+)(?P<counter>{_COUNTER_ALTERNATION})?"), _decimal),
    # 第1期, 年4回, 毎月1日, 1通, 150万円, 3年度
    (
        re.compile(
            rf"(?P<prefix>第|年|月)?(?P<number>{_NUMBER})(?P<counter>{_COUNTER_ALTERNATION})"
        ),
        _counted,
    ),
    # everything else: 50 (平方メートル), 1億2000万
    (re.compile(_NUMBER), _plain),
)

# Words the engine's analyser misreads in the FAQ's answers, and what it should read instead.
# Found by phonemising every fixed utterance (see tests/test_spoken_text.py).
READING_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile("納期限"), "のうきげん"),  # not おさめきげん
    (re.compile("お手数"), "おてすう"),  # not おてかず
    (re.compile(r"(?<=[\u4e00-\u9fff])はいりません"), "は要りません"),  # 申告は要りません, not 入り
    # 方 after a verb or の and before a particle is a person (かた), not a side (ほう); katakana
    # because "かたは" would be read as one word. "…した方がいい" keeps ほう.
    (re.compile(r"(?<=[ぁ-ん])方(?=[はにがもやのへで、](?!いい|よい|良い))"), "カタ"),
)

# Only the characters that matter for numbers are normalised; the rest of the text (full-width
# punctuation, which the sentence splitter and the engine rely on) is left as written.
_WIDTH_MAP = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"％": "%", "：": ":"})
_DASH_BETWEEN_DIGITS = re.compile(r"(?<=\d)[‐‑‒–—―−ー－](?=\d)")
_RANGE_TILDE = re.compile(r"[〜～~](?=\s*\d)")
_SPACE_AROUND_PUNCT = re.compile(r" *([、。！？「」『』（）,.!?]) *")


def to_spoken(text: str) -> str:
    """The text as the synthesiser should read it: every number replaced by its kana reading."""
    spoken = unicodedata.normalize("NFC", text).translate(_WIDTH_MAP)
    spoken = _DASH_BETWEEN_DIGITS.sub("-", spoken)
    spoken = _RANGE_TILDE.sub("から", spoken)
    for pattern, replace in RULES:
        spoken = pattern.sub(replace, spoken)
    for pattern, reading in READING_FIXES:
        spoken = pattern.sub(reading, spoken)
    spoken = _SPACE_AROUND_PUNCT.sub(r"\1", spoken)
    return re.sub(r" {2,}", " ", spoken).strip()
