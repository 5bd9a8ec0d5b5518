"""Normalisation (``faq.normalize``): what callers say without what carries no meaning,
and western Japanese grammar in the standard form the FAQ is written in."""

from __future__ import annotations

import pytest

from faq.normalize import normalize, standard_forms


@pytest.mark.parametrize(
    ("said", "standard"),
    [
        ("住民税は払わんでええの", "住民税は払わなくてもいいの"),
        ("申告せなあかんの、書かんでもええ", "申告せなあかんの、書かなくてもいい"),
        ("通知がまだ届かへん", "通知がまだ届かない"),
        ("コンビニで払えへんかった", "コンビニで払えなかった"),
        ("納付書を捨ててしもうた", "納付書を捨ててしまった"),
        ("二回払ってしもた", "二回払ってしまった"),
        ("引っ越してしもうて", "引っ越してしまって"),
        ("どないしたらええ", "どうしたらええ"),
        ("申告はせんでええの", "申告はしなくてもいいの"),
        ("出さんでええ", "出さなくてもいい"),
        ("コンビニでも払うてもうた", "コンビニでも払ってしまった"),
        ("二回払ってもうて", "二回払ってしまって"),
        ("買うた人と分けるの", "買った人と分けるの"),
        ("役所で言うてた", "役所で言ってた"),
        ("もろた書類", "もらった書類"),
        ("口座から落ちとった", "口座から落ちていた"),
        ("通知が届いとらん", "通知が届いていない"),
        ("県外に持っとる土地", "県外に持っている土地"),
        ("どげんして払えばよか", "どうやって払えばよか"),
        ("通知が届いとらんかった", "通知が届いていなかった"),
        ("もう申し込んどる", "もう申し込んでいる"),
        ("書類が来とる", "書類が来ている"),
        ("どうしても払えんのよ", "どうしても払えないのよ"),
        ("先月は払えんかった", "先月は払えなかった"),
        ("窓口に行くことができん", "窓口に行くことができない"),
        ("どがいな仕組みなん", "どんな仕組みなん"),
        ("安うなるっちゅう話", "安くなるという話"),
        ("納めたっちゅう証明書", "納めたという証明書"),
        ("新しゅう建てた家", "新しく建てた家"),
    ],
)
def test_western_japanese_grammar_in_its_standard_form(said, standard):
    assert standard_forms(said) == standard


@pytest.mark.parametrize(
    "text",
    [
        "へんな封筒が届いた",  # strange, not a negative
        "もう払ったんでええですか",  # ん is の after た
        "なんでええの",  # why
        "この辺の土地の評価",
        "ここらへんの土地",  # about here
        "住民税の計算がへんです",  # strange
        "通知書を探したけどないんです",  # けど, then ない
        "名前は奥さんでいいですか",  # an honorific
        "もしもたとえば払えなかったら",
        "それでもたぶん届きます",
        "払うために必要な書類",  # to pay, not paid
        "買うたびに",
        "証明書をとったんです",  # 取る, took
        "写真とってもいいですか",
        "還付金を受けとった",  # 受け取る in kana
        "バーコードを読みとって",
        "土地を買いとった",
        "スマホで住民税払えんの",  # a question ending in の: can I pay, in the east
    ],
)
def test_words_that_only_look_western_are_left_alone(text):
    assert standard_forms(text) == text


def test_western_forms_are_not_read_across_a_pause():
    """A clause ending in 〜て followed by one starting with もう is no もうた."""
    assert normalize("引き落としで、もうたぶん済んでる") == "引き落としでもうたぶん済んでる"
    assert normalize("延滞金がついて、もうたいへん").startswith("延滞金がついてもうたいへ")


def test_the_standard_form_reaches_the_matcher_without_politeness():
    assert normalize("あの、住民税って払わんでええんですか") == "住民税って払わなくてもいい"
    assert normalize("通知が届かへんのですが") == "通知が届かない"
