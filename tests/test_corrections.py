"""What a caller takes back is not matched: restarts (「あ、違う、」) and denials
(「…じゃなくて」)."""

from __future__ import annotations

import pytest

from faq.corrections import DENIED_MAX_CHARS, taken_back
from voicebot.policy import BotAction


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        ("課税証明…あ、違う、納税証明が欲しいです", "納税証明が欲しいです"),
        ("住民税の、いや、違います、固定資産税の納期です", "固定資産税の納期です"),
        ("軽じゃなくて普通車の税金です", "普通車の税金です"),
        ("通知を実家ではなくて、今の家に送ってください", "通知を今の家に送ってください"),
        ("年金…じゃなくて、給料からの天引きのこと", "給料からの天引きのこと"),
        ("介護保険料のほうじゃなくて住民税です", "住民税です"),
    ],
)
def test_what_the_caller_withdrew_is_removed(said, meant):
    assert taken_back(said) == meant


@pytest.mark.parametrize(
    "said",
    [
        "本人じゃなくても証明書は取れますか",  # asks whether another will do
        "評価額と課税標準額は何が違うんですか",  # 違う asked about, not a restart
        "住民税じゃないですよね、固定資産税ですよね",  # no denial form it knows
        "納税証明書を取りたいです",
    ],
)
def test_nothing_is_removed_without_a_withdrawal(said):
    assert taken_back(said) == said


def test_a_denial_reaches_back_to_a_particle_or_a_comma_only():
    """「税の郵便を自宅じゃなくて」 denies 自宅, not the mail: the phrase stops at を; a run
    of words with no boundary longer than ``DENIED_MAX_CHARS`` is left whole."""
    assert taken_back("税の郵便を自宅じゃなくて事務所に") == "税の郵便を事務所に"
    long_run = "あ" * (DENIED_MAX_CHARS + 5) + "じゃなくて住民税"
    assert taken_back(long_run) == long_run


def test_the_work_is_linear_in_the_text():
    """A hostile transcript of many denials and restarts is handled in one pass each."""
    text = ("違う、" + "軽じゃなくて、") * 5000 + "住民税です"
    assert taken_back(text).endswith("住民税です")


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("所得証明書…あ、違う、税金を納めた証明書のほうです、どこで取れますか", "cert.tax-payment"),
        ("固定資産税じゃなくて住民税の、通知が届くのは何月ですか", "juminzei.notice-timing"),
    ],
)
def test_the_entry_meant_is_the_one_matched(understanding, text, entry):
    _, decision = understanding.understand(text)
    assert decision.faq_id == entry, decision
    assert decision.action in (BotAction.ANSWER, BotAction.CONFIRM), decision
