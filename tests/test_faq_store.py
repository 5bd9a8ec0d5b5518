"""The FAQ files: the shipped content, and the loader's all-or-nothing validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faq.city import CityConfig, CityConfigError, load_city
from faq.model import MAX_ANSWER_CHARS, MAX_ANSWER_SENTENCES, Action, count_sentences
from faq.store import FaqLoadError, default_faq_dir, load_faq

GOOD_ENTRY = """\
  - id: test.one
    title: テストの項目
    action: answer
    questions: [一つ目の質問, 二つ目の質問, 三つ目の質問, 四つ目の質問]
    keywords: [テスト]
    answer: "{city_name}のテストです。"
"""


def write_faq(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def test_default_faq_covers_every_topic_with_its_action(faq, topics):
    for topic in topics:
        entry = faq.get(topic["id"])
        assert entry is not None, f"no FAQ entry for topic {topic['id']}"
        assert entry.action == Action(topic["action"]), topic["id"]


def test_default_faq_entries_are_phone_friendly(faq):
    assert not faq.warnings, [str(w) for w in faq.warnings]
    for entry in faq:
        spoken = faq.answer_text(entry)
        assert len(entry.questions) >= 4, entry.id
        assert len(spoken) <= MAX_ANSWER_CHARS, (entry.id, len(spoken))
        assert count_sentences(spoken) <= MAX_ANSWER_SENTENCES, entry.id
        assert "{" not in spoken and "http" not in spoken, entry.id


def test_answers_use_city_facts(tmp_path):
    city_file = tmp_path / "city.yaml"
    city_file.write_text("city_name: 海辺市\ncert_fee: 1通350円\n", encoding="utf-8")
    faq = load_faq(city=load_city(city_file))
    assert "1通350円" in faq.answer_text("cert.fee")
    assert load_city(city_file).office_hours == CityConfig().office_hours  # default kept


def test_city_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "city.yaml"
    bad.write_text("city_name: 海辺市\nfee_typo: 1\n", encoding="utf-8")
    with pytest.raises(CityConfigError, match="fee_typo"):
        load_city(bad)


def test_missing_field_names_file_entry_and_field(tmp_path):
    write_faq(tmp_path, "a.yaml", "category: テスト\nentries:\n" + GOOD_ENTRY)
    write_faq(
        tmp_path,
        "b.yaml",
        "category: テスト\nentries:\n"
        "  - id: test.two\n    title: 二つ目\n    action: answer\n"
        "    questions: [質問です]\n",
    )
    with pytest.raises(FaqLoadError) as err:
        load_faq(tmp_path)
    problems = err.value.problems
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.entry, p.field) == ("b.yaml", "test.two", "answer")
    assert p.line == 3
    assert "b.yaml:3, entry 'test.two', field 'answer'" in str(err.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    write_faq(tmp_path, "broken.yaml", "category: テスト\nentries:\n  - id: [unclosed\n")
    with pytest.raises(FaqLoadError) as err:
        load_faq(tmp_path)
    (p,) = err.value.problems
    assert p.file == "broken.yaml" and p.line is not None
    assert "YAML syntax error" in p.message


@pytest.mark.parametrize(
    ("mutation", "field", "message"),
    [
        (("action: answer", "action: reply"), "action", "Input should be"),
        (("id: test.one", "id: Test One"), "id", "lowercase"),
        (("{city_name}", "{city_nmae}"), "answer", "unknown placeholder"),
        (("keywords: [テスト]", "keywords: [テスト]\n    colour: red"), "colour", "unknown field"),
        (("questions: [", "questions: ['', "), "questions", "empty"),
    ],
)
def test_each_kind_of_bad_entry_is_reported(tmp_path, mutation, field, message):
    write_faq(tmp_path, "a.yaml", "category: テスト\nentries:\n" + GOOD_ENTRY.replace(*mutation))
    with pytest.raises(FaqLoadError) as err:
        load_faq(tmp_path)
    (p,) = err.value.problems
    assert p.file == "a.yaml" and p.field == field
    assert message in p.message


def test_too_many_sentences_is_an_error(tmp_path):
    long_answer = "はい。" * (MAX_ANSWER_SENTENCES + 1)
    body = GOOD_ENTRY.replace("{city_name}のテストです。", long_answer)
    write_faq(tmp_path, "a.yaml", "category: テスト\nentries:\n" + body)
    with pytest.raises(FaqLoadError, match="sentences"):
        load_faq(tmp_path)


def test_duplicate_ids_across_files(tmp_path):
    write_faq(tmp_path, "a.yaml", "category: テスト\nentries:\n" + GOOD_ENTRY)
    write_faq(tmp_path, "b.yaml", "category: テスト\nentries:\n" + GOOD_ENTRY)
    with pytest.raises(FaqLoadError, match=r"already defined in a\.yaml"):
        load_faq(tmp_path)


def test_broken_file_loads_nothing_and_all_problems_are_listed(tmp_path):
    """One bad entry rejects its whole file; problems of every file are reported at once."""
    for p in default_faq_dir().glob("*.yaml"):
        shutil.copy(p, tmp_path / p.name)
    payment = tmp_path / "payment.yaml"
    text = payment.read_text(encoding="utf-8")
    text = text.replace("action: transfer", "action: transferr", 1)
    payment.write_text(text, encoding="utf-8")
    write_faq(tmp_path, "zz.yaml", "category: テスト\nentries: []\n")
    with pytest.raises(FaqLoadError) as err:
        load_faq(tmp_path)
    files = {p.file for p in err.value.problems}
    assert files == {"payment.yaml", "zz.yaml"}


def test_long_answer_is_a_warning_not_an_error(tmp_path):
    body = GOOD_ENTRY.replace("{city_name}のテストです。", "あ" * (MAX_ANSWER_CHARS + 5) + "。")
    write_faq(tmp_path, "a.yaml", "category: テスト\nentries:\n" + body)
    faq = load_faq(tmp_path)
    assert len(faq) == 1
    (w,) = faq.warnings
    assert w.entry == "test.one" and w.field == "answer"


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FaqLoadError, match="no FAQ files"):
        load_faq(tmp_path)
