"""What a caller takes back is not matched: restarts (「あ、違う、」) and denials
(「…じゃなくて」)."""

from __future__ import annotations

import pytest

from faq.corrections import DENIED_MAX_CHARS, taken_back
from voicebot.policy import BotAction


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        # a restart changes the tax or the paper named, and keeps what was asked
        ("課税証明…あ、違う、納税証明が欲しいです", "…、納税証明が欲しいです"),
        (
            "住民税の納付書をなくした、いや、違います、固定資産税のです",
            "の納付書をなくした、、固定資産税のです",
        ),
        # a denied tax or paper goes
        ("軽自動車税じゃなくて普通車の税金です", "普通車の税金です"),
        ("介護保険料のほうじゃなくて住民税です", "住民税です"),
        ("介護保険…じゃなくて、所得の証明書のことです", "所得の証明書のことです"),
        # no tax before the restart to change: only the restart goes
        (
            "口座振替にしたいんですが、あ、違う、住民税のです",
            "口座振替にしたいんですが、、住民税のです",
        ),
        ("確定申告ではなくて、市の申告のことです", "市の申告のことです"),
    ],
)
def test_the_tax_or_paper_withdrawn_is_removed(said, meant):
    assert taken_back(said) == meant


@pytest.mark.parametrize(
    "said",
    [
        "本人じゃなくても証明書は取れますか",  # asks whether another will do
        "評価額と課税標準額は何が違うんですか",  # 違う asked about, not a restart
        "住民税だけじゃなくて固定資産税も払えないんです",  # adds, not denies
        "給料から天引きじゃなくて、自分で払いたいんです",  # the way denied is the question
        "年金から引かれるんじゃなくて、納付書で払えますか",  # a verb phrase
        "納税証明書を取りたいです",
    ],
)
def test_nothing_else_is_removed(said):
    assert taken_back(said) == said


def test_a_denial_reaches_back_to_a_particle_or_a_comma_only():
    """「申告書を住民税じゃなくて」 denies the tax, not the form: the phrase stops at を; a
    run of words with no boundary longer than ``DENIED_MAX_CHARS`` is left whole."""
    assert taken_back("申告書を住民税じゃなくて固定資産税で") == "申告書を固定資産税で"
    long_run = "あ" * (DENIED_MAX_CHARS + 5) + "税じゃなくて住民税"
    assert taken_back(long_run) == long_run


def test_the_work_is_linear_in_the_text():
    """A hostile transcript of many denials and restarts is handled in one pass each."""
    text = ("住民税、違う、" + "軽自動車税じゃなくて、") * 5000 + "住民税です"
    assert taken_back(text).endswith("住民税です")


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("所得証明書…あ、違う、税金を納めた証明書のほうです、どこで取れますか", "cert.tax-payment"),
        ("固定資産税じゃなくて住民税の、通知が届くのは何月ですか", "juminzei.notice-timing"),
        ("軽自動車税の納付書をなくした、いや、違う、固定資産税のです", "payment.lost-notice"),
    ],
)
def test_the_entry_meant_is_the_one_matched(understanding, text, entry):
    _, decision = understanding.understand(text)
    assert decision.faq_id == entry, decision
    assert decision.action in (BotAction.ANSWER, BotAction.CONFIRM), decision
