"""A transcript that repeats the recognition hint counts as unheard; a question does not."""

from __future__ import annotations

import pytest

from voicebot.asr.hint_echo import crosses_item, echoes_hint, hint_runs
from voicebot.asr.whisper import faq_category_prompt, faq_vocabulary_prompt


@pytest.fixture(scope="module")
def hints(faq):
    return faq_vocabulary_prompt(faq), faq_category_prompt(faq)


@pytest.mark.parametrize(
    "heard",
    [
        # Whisper's writing on unclear audio: the hint's items in the hint's order.
        "届く時期、住民税の天引き、年金からの住民税の天引き、年金からの",
        "給与からの住民税の天引き、年金からの住民税の天引き",
        "発見の納税証明書、窓口の場所と受付時間。",
        "納税証明書と所得証明書や課税証明書",
    ],
)
def test_hint_items_recited_are_an_echo(hints, heard):
    assert any(echoes_hint(heard, hint) for hint in hints)


@pytest.mark.parametrize(
    "heard",
    [
        "窓口の場所と受付時間を教えてください",
        "年金からの住民税の天引きについて聞きたいんですが",
        "納税証明書、窓口で取れますか",  # the caller's own comma after a title word
        "住民税の納期はいつですか",
        "納付書をなくしてしまったんですが",
    ],
)
def test_a_question_that_names_a_topic_is_not_an_echo(hints, heard):
    assert not any(echoes_hint(heard, hint) for hint in hints)


def test_no_hint_no_echo():
    assert not echoes_hint("住民税の天引き、年金からの住民税", None)
    assert not echoes_hint("", "住民税の納期。")


def test_runs_are_the_hint_stretches_left_to_right():
    hint = "住民税の納期、固定資産税の納期。"
    assert hint_runs("あの住民税の納期、固定資産税のことで", hint) == ["住民税の納期、固定資産税の"]
    assert crosses_item("住民税の納期、固定資産税の")
    assert not crosses_item("住民税の納期、固定")  # two characters after the comma: a caller's
