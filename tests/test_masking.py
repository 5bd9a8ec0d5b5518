"""Masking of personal data in callers' words: what must go, and FAQ-like text that must stay."""

from __future__ import annotations

import pytest

from dashboards.masking import (
    ACCOUNT,
    ADDRESS,
    BIRTH_DATE,
    CARD,
    MY_NUMBER,
    NUMBER,
    PHONE,
    WITHHELD,
    MaskingSink,
    mask_caller,
    mask_event,
    mask_text,
)
from voicebot.events import (
    BotSpeechStarted,
    CallEnded,
    CallStarted,
    ComponentFailed,
    EventRecorder,
    IntentDecided,
    Recognized,
    TransferRequested,
)

MASKED = [
    # phone numbers, every way a recogniser writes them
    ("電話番号は090-1234-5678です", f"電話番号は{PHONE}です"),
    ("09012345678に折り返してください", f"{PHONE}に折り返してください"),
    ("０９０－１２３４－５６７８", PHONE),
    ("０９０ー１２３４ー５６７８です", f"{PHONE}です"),
    ("03-1234-5678", PHONE),
    ("(03)1234-5678です", f"{PHONE}です"),
    ("0312345678", PHONE),
    ("090 1234 5678", PHONE),
    ("+81-90-1234-5678", PHONE),
    ("ゼロキューゼロ、イチニーサンヨン、ゴーロクナナハチです", f"{PHONE}です"),
    ("ぜろきゅうぜろのいちにーさんよんのごーろくななはち", PHONE),
    ("〇九〇の一二三四の五六七八", PHONE),
    ("携帯の番号は1234-5678", f"携帯の番号は{PHONE}"),
    # My Number
    ("マイナンバーは1234 5678 9012です", f"マイナンバーは{MY_NUMBER}です"),
    ("マイナンバーは1234-5678-9012", f"マイナンバーは{MY_NUMBER}"),
    ("個人番号１２３４５６７８９０１２", f"個人番号{MY_NUMBER}"),
    ("番号は123456789012です", f"番号は{MY_NUMBER}です"),
    # cards and accounts
    ("カード番号は4111 1111 1111 1111", f"カード番号は{CARD}"),
    ("4111-1111-1111-1111で払いたい", f"{CARD}で払いたい"),
    ("口座番号は1234567です", f"口座番号は{ACCOUNT}です"),
    ("口座は普通の7654321", f"口座は普通の{ACCOUNT}"),
    # dates of birth
    ("生年月日は昭和45年3月2日です", f"生年月日は{BIRTH_DATE}です"),
    ("生年月日は、昭和45年3月2日", f"生年月日は、{BIRTH_DATE}"),
    ("1960年1月2日生まれです", f"{BIRTH_DATE}生まれです"),
    ("平成元年5月5日生まれ", f"{BIRTH_DATE}生まれ"),
    ("昭和四十五年三月二日生まれです", f"{BIRTH_DATE}生まれです"),
    ("一九六〇年一月二日生まれ", f"{BIRTH_DATE}生まれ"),
    ("生年月日は1960/1/2", f"生年月日は{BIRTH_DATE}"),
    ("S45.3.2生まれ", f"{BIRTH_DATE}生まれ"),
    ("誕生日は3月2日です", f"誕生日は{BIRTH_DATE}です"),
    ("昭和45年生まれです", f"{BIRTH_DATE}生まれです"),
    # addresses
    ("住所は東京都新宿区西新宿2-8-1です", f"住所は{ADDRESS}です"),
    ("大阪府大阪市北区中之島1丁目3番20号", ADDRESS),
    ("横浜市港北区日吉本町1-2-3に住んでいます", f"{ADDRESS}に住んでいます"),
    ("緑区中央3丁目5番", ADDRESS),
    ("中央三丁目五番地の二です", f"{ADDRESS}です"),
    ("〒123-4567", ADDRESS),
    ("郵便番号は1234567", ADDRESS),
    # other long numbers a caller reads out (宛名番号, 通知書番号)
    ("宛名番号は1234567890です", f"宛名番号は{NUMBER}です"),
    ("通知書番号は2468135", f"通知書番号は{NUMBER}"),
]

UNCHANGED = [
    "令和6年度の住民税について",
    "6月30日が納期です",
    "1月1日現在お住まいの市区町村で課税されます",
    "令和7年1月1日時点の所有者",
    "平成30年度分の証明書をください",
    "2024年の所得について",
    "5000円を払いました",
    "税額は123,456円です",
    "12000000円",
    "1,000,000円くらい",
    "受付時間は8時30分から17時15分まで",
    "第1期は6月末です",
    "固定資産税の第2期の納期限は12月25日",
    "市役所の2階の3番窓口です",
    "住民税の納付書をなくしました",
    "口座振替にしたいんですがどうすればいいですか",
    "マイナンバーカードで証明書が取れますか",
    "電話番号を教えてください",
    "軽自動車税は4月1日の所有者に課税",
    "サンキューです",
    "いちにさんしごろくしち",
    "第3条の2",
    "市の中央にあります",
    "3人家族で年収は400万円です",
    "担当の方と直接話したいです",
    "",
]


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_personal_data_is_masked(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", UNCHANGED)
def test_faq_like_text_is_left_alone(text):
    assert mask_text(text) == text


def test_several_kinds_in_one_utterance():
    text = (
        "私は昭和４５年３月２日生まれで、電話は０９０１２３４５６７８、"
        "マイナンバーは1234 5678 9012、住所は横浜市港北区日吉本町1-2-3です"
    )
    masked = mask_text(text)
    assert masked == (
        f"私は{BIRTH_DATE}生まれで、電話は{PHONE}、マイナンバーは{MY_NUMBER}、住所は{ADDRESS}です"
    )


@pytest.mark.parametrize(("text", "_"), MASKED)
def test_masking_is_idempotent(text, _):
    once = mask_text(text)
    assert mask_text(once) == once


def test_no_digit_of_personal_data_survives():
    for text, _ in MASKED:
        masked = mask_text(text)
        assert not any(c.isdigit() for c in masked), (text, masked)


@pytest.mark.parametrize(
    ("caller", "masked"),
    [
        ("0312345678", "031234****"),
        ("+819012345678", "+81901234****"),
        ("sip:09012345678@10.0.0.1:5060", "sip:0901234****@10.0.0.1:5060"),
        ('"山田太郎" <sip:0312345678@pbx.example>', "sip:031234****@pbx.example"),
        ("webrtc", "webrtc"),
        (None, None),
    ],
)
def test_caller_identity_hides_last_four_digits(caller, masked):
    assert mask_caller(caller) == masked


def test_events_are_masked_field_by_field():
    said = "電話は090-1234-5678です"
    recognized = mask_event(Recognized(call_id="c1", t_ms=1.0, text=said, final=True))
    assert recognized.text == f"電話は{PHONE}です"
    decided = mask_event(
        IntentDecided(
            call_id="c1",
            t_ms=2.0,
            text=said,
            faq_id=None,
            score=0.1,
            action="reprompt",
            candidates=[{"faq_id": "a", "score": 0.1, "text": "1960年1月2日生まれ"}],
        )
    )
    assert decided.text == f"電話は{PHONE}です"
    assert decided.candidates == [{"faq_id": "a", "score": 0.1, "text": f"{BIRTH_DATE}生まれ"}]
    transfer = mask_event(
        TransferRequested(
            call_id="c1",
            t_ms=3.0,
            reason="caller_request",
            summary={
                "reason": "caller_request",
                "topic": None,
                "turns": [{"heard": "マイナンバーは123456789012", "faq_id": None, "score": 0}],
            },
        )
    )
    assert transfer.summary["turns"][0]["heard"] == f"マイナンバーは{MY_NUMBER}"
    assert transfer.summary["reason"] == "caller_request"
    started = mask_event(CallStarted(call_id="c1", t_ms=0.0, transport="sip", caller="0312345678"))
    assert started.caller == "031234****"
    failed = mask_event(
        ComponentFailed(call_id="c1", t_ms=4.0, component="x", error="bad input 09012345678")
    )
    assert failed.error == f"bad input {PHONE}"


def test_the_bots_own_words_and_other_fields_stay():
    answer = "市役所の電話番号は03-1234-5678です"  # from the FAQ: the city's own number
    spoken = BotSpeechStarted(call_id="c1", t_ms=1.0, text=answer, kind="answer")
    assert mask_event(spoken) is spoken
    ended = CallEnded(call_id="c1", t_ms=9.0, outcome="completed", duration_ms=9.0)
    assert mask_event(ended) is ended


def test_masking_sink_passes_masked_copies_and_keeps_the_original():
    inner = EventRecorder()
    sink = MaskingSink(inner)
    original = Recognized(call_id="c1", t_ms=1.0, text="口座番号は1234567", final=True)
    sink.emit(original)
    assert inner.events[0].text == f"口座番号は{ACCOUNT}"
    assert inner.events[0].wall_time == original.wall_time  # same event, same identity
    assert original.text == "口座番号は1234567"


def test_a_masking_failure_withholds_the_words_but_keeps_the_event(monkeypatch):
    import dashboards.masking as masking

    def broken(_text: str) -> str:
        raise RuntimeError("simulated masking bug")

    monkeypatch.setattr(masking, "mask_text", broken)
    inner = EventRecorder()
    MaskingSink(inner).emit(Recognized(call_id="c1", t_ms=1.0, text="09012345678", final=True))
    assert len(inner.events) == 1
    assert inner.events[0].text == WITHHELD
