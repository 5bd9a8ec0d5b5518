"""On'yomi readings of the compounds a recogniser makes from the wrong kanji."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import DATA

from faq.onyomi import OnyomiReader, load_table
from faq.reading import sound_key


def test_table_has_the_joyo_kanji_with_their_on_readings():
    table = load_table()
    assert len(table) > 2500
    assert table["告"][0] == "コク"
    assert {"トウ", "ノウ", "ナ"} <= set(table["納"])


def test_the_faq_decides_which_on_reading_a_kanji_has():
    """納 is listed トウ first, but tax texts say ノウ (納付, 納税)."""
    assert OnyomiReader([]).preferred["納"] == "トウ"
    assert OnyomiReader(["納付書を送ります", "納税の証明"]).preferred["納"] == "ノウ"


def test_a_kanji_the_faq_does_not_use_is_read_as_it_sounds_alone():
    """絵 is listed カイ first, but alone it is エ; 体 alone is カラダ (no on'yomi), so the
    first listed stands."""
    assert OnyomiReader([]).preferred["絵"] == "エ"
    assert OnyomiReader([]).preferred["体"] == load_table()["体"][0]
    assert OnyomiReader(["体制", "自治体"]).preferred["体"] == "タイ"


def test_late_fee_in_wrong_kanji_is_not_taken_for_demolition(understanding):
    """延滞金 heard as 絵体禁: read カイタイキン it was 解体 (a demolished house) and
    answered; read エタイキン it is near 延滞金."""
    match, decision = understanding.understand("払うのが遅れたら絵体禁がつくんですか")
    assert match.top.faq_id == "payment.overdue", match.candidates
    assert decision.faq_id != "kotei.demolished"


def test_unknown_compounds_are_read_by_their_sounds(faq):
    reader = OnyomiReader(q for e in faq for q in e.questions)
    assert reader.key("住民税の進告は") == sound_key("じゅうみんぜいのしんこくわ")  # 申告
    assert reader.key("写権に使う") == sound_key("しゃけんにつかう")  # 車検
    assert reader.key("納不書") == sound_key("のうふしょ")  # 納付書
    assert reader.key("住民税の申告は") is None  # words the dictionary knows: nothing to add


def test_wrong_kanji_for_vehicle_inspection_finds_the_inspection_certificate(understanding):
    match, _ = understanding.understand("写権に使う納税証明書が欲しいんですけど")
    assert match.top.faq_id == "keiji.inspection-certificate", match.candidates


def test_table_is_made_from_unihan(tmp_path):
    unihan = tmp_path / "unihan"
    unihan.mkdir()
    (unihan / "Unihan_OtherMappings.txt").write_text(
        "# comment\nU+544A\tkJoyoKanji\t2010\nU+7D0D\tkJoyoKanji\t2010\n", encoding="utf-8"
    )
    (unihan / "Unihan_Readings.txt").write_text(
        "U+544A\tkJapaneseOn\tKOKU KOU\nU+7D0D\tkJapaneseOn\tTOU NOU NA\n"
        "U+4E00\tkJapaneseOn\tICHI ITSU\n",  # not in the lists: left out
        encoding="utf-8",
    )
    out = tmp_path / "onyomi.tsv"
    run = subprocess.run(
        [
            sys.executable,
            str(DATA.parent.parent / "bench" / "make_onyomi_table.py"),
            "--unihan",
            str(unihan),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(run.stdout)["kanji"] == 2
    assert load_table.__wrapped__(out) == {"告": ("コク", "コウ"), "納": ("トウ", "ノウ", "ナ")}
