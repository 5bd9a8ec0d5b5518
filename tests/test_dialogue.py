"""The conversation state machine, driven with text as a caller would speak."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from voicebot import prompts
from voicebot.config import Settings
from voicebot.dialogue import Dialogue, Next, State

JST = ZoneInfo("Asia/Tokyo")
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=JST)  # a Tuesday morning
CLOSED = dt.datetime(2026, 11, 22, 10, 0, tzinfo=JST)  # a Sunday


@pytest.fixture
def call(understanding):
    d = Dialogue(understanding, now=lambda: OPEN)
    greeting = d.start()
    assert "AI" in greeting.text and "担当者" in greeting.text and "0番" in greeting.text
    return d


def test_answer_then_anything_else_then_goodbye(call, faq):
    reply = call.on_utterance("口座振替の申し込みはどうすればいいですか")
    assert reply.kind == "answer" and reply.next is Next.LISTEN
    assert reply.text.startswith(faq.answer_text("payment.account-transfer"))
    assert reply.text.endswith(prompts.ANYTHING_ELSE)
    reply = call.on_utterance("わかりました、ありがとうございました")
    assert reply.kind == "goodbye" and reply.next is Next.HANGUP
    assert call.state is State.ENDED


def test_staff_topic_transfers_at_once_with_handover(call):
    call.on_utterance("口座振替の申し込みはどうすればいいですか")
    reply = call.on_utterance("税金が払えないので分割にしてほしいんです")
    assert reply.next is Next.TRANSFER and reply.kind == "transfer"
    handover = reply.handover
    assert handover.reason == "staff_topic"
    assert [t.faq_id for t in handover.turns] == ["payment.account-transfer", "payment.cannot-pay"]
    assert handover.turns[-1].heard == "税金が払えないので分割にしてほしいんです"
    assert handover.turns[-1].candidates  # staff see what the bot considered


def test_operator_request_and_dtmf_zero(understanding):
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    reply = d.on_utterance("担当者と話したいです")
    assert reply.next is Next.TRANSFER and reply.handover.reason == "caller_request"
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    reply = d.on_dtmf("0")
    assert reply.next is Next.TRANSFER and reply.handover.turns[-1].heard == "[DTMF 0]"


def require_confirmation(understanding, monkeypatch) -> None:
    """Raise the answer threshold of the shared understanding for this test only: every
    match is then confirmed first. monkeypatch puts back whatever was configured."""
    monkeypatch.setattr(understanding.settings.thresholds, "answer", 0.9999)


def test_confirmation_yes_delivers_the_answer(call, understanding, faq, monkeypatch):
    require_confirmation(understanding, monkeypatch)
    reply = call.on_utterance("口座振替にしたい")
    assert reply.kind == "confirm" and reply.expect_yes_no
    assert "口座振替" in reply.text
    reply = call.on_utterance("はい、そうです")
    assert reply.kind == "answer"
    assert faq.answer_text("payment.account-transfer") in reply.text


def test_confirmation_by_dtmf_and_denial(call, understanding, monkeypatch):
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    reply = call.on_dtmf("2")
    assert reply.kind == "reprompt" and reply.text == prompts.CONFIRM_DENIED
    call.on_utterance("口座振替にしたい")
    reply = call.on_dtmf("1")
    assert reply.kind == "answer"


def test_the_shared_understanding_keeps_the_configured_thresholds(understanding):
    """Runs after the confirmation tests above: the session-wide understanding that every
    later test module uses still has the thresholds the settings give, not the ones a
    test set for itself."""
    assert understanding.settings.thresholds == Settings().thresholds


def test_not_understood_twice_goes_to_staff(call):
    reply = call.on_utterance("ゴミの収集日を教えてください")
    assert reply.kind == "reprompt" and reply.next is Next.LISTEN
    reply = call.on_utterance("犬の登録はどうするんですか")
    assert reply.next is Next.TRANSFER and reply.handover.reason == "not_understood"


def test_silence_counts_like_not_understood(call):
    assert call.on_no_input().kind == "reprompt"
    assert call.on_no_input().next is Next.TRANSFER


def test_a_silent_line_is_ended_when_staff_cannot_take_it(understanding):
    """Asked again, handed over, and when the handover fails, the third silence ends the
    call with a goodbye rather than holding the line open until the longest call."""
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    assert d.on_no_input().kind == "reprompt"
    assert d.on_no_input().next is Next.TRANSFER
    assert d.on_transfer_failed().next is Next.LISTEN
    reply = d.on_no_input()
    assert reply.kind == "silent_line" and reply.next is Next.HANGUP
    assert reply.parts == (prompts.SILENT_LINE, prompts.GOODBYE)
    assert d.state is State.ENDED
    # Out of hours, where the handover is the hours instead:
    d = Dialogue(understanding, now=lambda: CLOSED)
    d.start()
    assert [d.on_no_input().kind for _ in range(2)] == ["reprompt", "out_of_hours"]
    assert d.on_no_input().next is Next.HANGUP


def test_staff_found_unreachable_are_not_tried_again_in_the_same_call(call, understanding):
    """A hand-over failed: the caller was told to call again. A later need for staff says
    so at once instead of another wait on hold, a redirect offers no staff, and a
    component failure closes the call politely instead of handing over once more."""
    assert call.on_utterance("担当者と話したいです").next is Next.TRANSFER
    call.on_transfer_failed()
    assert call.staff_unreachable
    reply = call.on_utterance("税金が払えないので分割にしてほしいんです")
    assert reply.kind == "staff_unreachable" and reply.next is Next.LISTEN
    hours = understanding.faq.city.office_hours
    assert reply.parts == (
        prompts.STAFF_UNREACHABLE,
        prompts.CALL_AGAIN.format(office_hours=hours),
        prompts.ANYTHING_ELSE,
    )
    assert reply.turn.faq_id == "payment.cannot-pay"  # the topic is still reported
    reply = call.on_utterance("所得税の確定申告について聞きたいのですが")
    assert reply.kind == "redirect" and not reply.expect_yes_no
    assert reply.parts[-1] == prompts.ANYTHING_ELSE
    reply = call.on_failure("synthesizer")
    assert reply.next is Next.HANGUP and reply.handover is None
    assert reply.parts == (
        prompts.APOLOGY_FAILURE_CLOSED,
        prompts.CALL_AGAIN.format(office_hours=hours),
        prompts.GOODBYE,
    )


def test_at_the_turn_limit_with_nobody_to_hand_to_the_call_ends(understanding):
    """The question limit hands over; when staff were found unreachable, or it is out of
    hours, a question at the limit gets what to do instead and a goodbye, not another
    「ほかに…」 that keeps the call open with nothing left to give."""
    d = Dialogue(understanding, max_turns=2, now=lambda: OPEN)
    d.start()
    assert d.on_utterance("担当者と話したいです").next is Next.TRANSFER
    d.on_transfer_failed()
    d.on_utterance("納付書をなくしてしまいました")
    reply = d.on_utterance("軽自動車税はいつ払えばいいですか")
    assert reply.kind == "staff_unreachable" and reply.next is Next.HANGUP
    assert reply.parts[-1] == prompts.GOODBYE and d.state is State.ENDED
    d = Dialogue(understanding, max_turns=2, now=lambda: CLOSED)
    d.start()
    d.on_utterance("納付書をなくしてしまいました")
    d.on_utterance("口座振替の申し込みはどうすればいいですか")
    reply = d.on_utterance("軽自動車税はいつ払えばいいですか")
    assert reply.kind == "out_of_hours" and reply.next is Next.HANGUP
    assert reply.parts[-1] == prompts.GOODBYE


def test_a_failure_before_any_failed_hand_over_still_hands_over(call):
    reply = call.on_failure("recognizer")
    assert reply.next is Next.TRANSFER and reply.handover.reason == "failure"


def test_only_silences_in_a_row_end_the_call(call):
    call.on_no_input()
    call.on_utterance("口座振替の申し込みはどうすればいいですか")
    call.on_no_input()
    call.on_dtmf("5")  # a key press is not silence either
    assert call.on_no_input().next is Next.TRANSFER  # two misses: staff, not the end
    call.on_transfer_failed()
    assert call.on_no_input().kind == "reprompt"  # the second silence in a row
    checkpoint = call.checkpoint()
    call.on_utterance("ゴミの収集日を教えてください")
    checkpoint.restore()  # that turn was half a sentence: the count is what it was
    assert call.silences == 2
    assert call.on_no_input().next is Next.HANGUP


def test_repeat_says_the_last_answer_again(call, faq):
    first = call.on_utterance("納付書をなくしてしまいました")
    reply = call.on_utterance("すみません、もう一度お願いします")
    assert reply.kind == "repeat"
    assert reply.parts == (prompts.REPEAT_PREFIX, *first.parts)


def test_redirect_offers_transfer_and_yes_transfers(call):
    reply = call.on_utterance("確定申告はどこでするんですか")
    assert reply.kind == "redirect" and "税務署" in reply.text and reply.expect_yes_no
    reply = call.on_utterance("はい、お願いします")
    assert reply.next is Next.TRANSFER and reply.handover.reason == "redirect_accepted"


def test_redirect_then_another_question(call):
    call.on_utterance("確定申告はどこでするんですか")
    reply = call.on_utterance("あと、納付書をなくしたんですが")
    assert reply.kind == "answer" and reply.decision.faq_id == "payment.lost-notice"


def test_outside_hours_no_transfer_but_the_hours(understanding, faq):
    d = Dialogue(understanding, now=lambda: CLOSED)
    d.start()
    reply = d.on_utterance("担当者につないでください")
    assert reply.next is Next.LISTEN and reply.kind == "out_of_hours"
    assert faq.city.office_hours in reply.text
    reply = d.on_utterance("納付書をなくしてしまいました")
    assert reply.kind == "answer"  # the bot still answers what it can


def test_component_failure_apologises_and_transfers(call):
    reply = call.on_failure("recognizer")
    assert reply.next is Next.TRANSFER and reply.text == prompts.APOLOGY_FAILURE
    assert reply.handover.reason == "failure"


def test_turn_limit(understanding):
    d = Dialogue(understanding, max_turns=2, now=lambda: OPEN)
    d.start()
    d.on_utterance("納付書をなくしてしまいました")
    d.on_utterance("口座振替の申し込みをしたい")
    reply = d.on_utterance("コンビニで払えますか")
    assert reply.next is Next.TRANSFER and reply.handover.reason == "turn_limit"


# Two titles in one sentence: the FAQ explains both equally well.
TWO_TOPICS = "証明書の郵送請求と払いすぎた税金の還付"


def test_two_close_topics_are_offered_by_name_and_answered_by_position(call, faq):
    reply = call.on_utterance(TWO_TOPICS)
    assert reply.kind == "choose" and reply.expect_yes_no and reply.next is Next.LISTEN
    first, second = reply.decision.choices
    assert {first, second} == {"cert.by-mail", "payment.refund"}
    assert reply.parts == (
        prompts.CHOICE_FIRST.format(title=faq[first].title),
        prompts.CHOICE_SECOND.format(title=faq[second].title),
        prompts.CHOICE_HOW,
    )
    assert call.state is State.CHOOSING
    reply = call.on_utterance("後の方です")
    assert reply.kind == "answer" and reply.text.startswith(faq.answer_text(second))
    assert call.turns[-1].action == "answer" and call.turns[-1].faq_id == second
    assert call.turns[-1].heard == "後の方です" and reply.turn is call.turns[-1]


def test_a_choice_is_answered_by_key_or_by_the_topic_s_words(understanding, faq):
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    first = d.on_utterance(TWO_TOPICS).decision.choices[0]
    reply = d.on_dtmf("1")
    assert reply.kind == "answer" and reply.text.startswith(faq.answer_text(first))
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    d.on_utterance(TWO_TOPICS)
    reply = d.on_utterance("還付のほうです")
    assert reply.kind == "answer" and reply.text.startswith(faq.answer_text("payment.refund"))


def test_neither_choice_asks_again_then_hands_over(understanding):
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    d.on_utterance(TWO_TOPICS)
    reply = d.on_utterance("いいえ、どちらでもないです")
    assert reply.kind == "reprompt" and reply.text == prompts.CONFIRM_DENIED
    d.on_utterance(TWO_TOPICS)
    reply = d.on_utterance("はい")  # does not say which: asked once more, now it is staff
    assert reply.next is Next.TRANSFER and reply.handover.reason == "not_understood"


def test_a_new_question_instead_of_a_choice_is_answered(call, faq):
    call.on_utterance(TWO_TOPICS)
    reply = call.on_utterance("口座振替の申し込みはどうすればいいですか")
    assert reply.kind == "answer"
    assert reply.text.startswith(faq.answer_text("payment.account-transfer"))


def test_a_question_outside_the_faq_instead_of_a_choice_names_neither(call):
    """A reply about paying the gas bill names no entry: it is not taken as one of the two
    offered (the matcher gives it no candidate at all); the caller is told the tax line
    does not handle it."""
    call.on_utterance(TWO_TOPICS)
    reply = call.on_utterance("ガス代をコンビニで払いたいんですが")
    assert reply.kind == "not_a_tax" and reply.next is Next.LISTEN
    assert call.turns[-1].faq_id is None


def test_a_charge_that_is_not_a_tax_is_said_to_be_outside_the_tax_line(call, faq):
    """Asked clearly about paying a charge that is not a tax, the caller is not told they
    were not heard: they are told where to ask (the city's own words for the number), a
    miss before it still stands (in case it was a tax question after all, the next miss
    reaches staff), and a repeat says it again."""
    call.on_no_input()
    reply = call.on_utterance("保育料の引き落としの口座を変えたいんですが")
    assert reply.kind == "not_a_tax" and reply.next is Next.LISTEN
    assert faq.city.office_phone in reply.parts[0] and reply.parts[1] == prompts.NOT_A_TAX_UNLESS
    assert call.misses == 1
    assert call.on_utterance("もう一回言ってください").parts[1:] == reply.parts


def test_ordinal_replies():
    from voicebot.dialogue import ordinal_reply

    assert ordinal_reply("前の方です") == 0
    assert ordinal_reply("１番で") == 0
    assert ordinal_reply("あとのほう") == 1
    assert ordinal_reply("二番です") == 1
    assert ordinal_reply("前の方じゃなくて後の方") is None  # both: not a position
    assert ordinal_reply("前の住所に届いた通知について聞きたいんですが") is None  # a question


def test_a_checkpoint_undoes_the_turns_after_it(call, faq):
    """A half sentence answered too early is undone, and the whole sentence taken instead:
    the caller's words, the state and what a repeat would say are as if it never was."""
    call.on_utterance("納付書をなくしてしまいました")
    mark = call.checkpoint()
    assert call.on_utterance("以上です").next is Next.HANGUP and call.state is State.ENDED
    mark.restore()
    assert call.state is State.LISTENING and call.last_heard == "納付書をなくしてしまいました"
    call.on_utterance("口座振替の")
    mark.restore()  # a checkpoint can be restored more than once
    reply = call.on_utterance("もう一度お願いします")
    assert reply.kind == "repeat" and faq.answer_text("payment.lost-notice") in reply.text
    handover = call.on_dtmf("0").handover
    heard = [t.heard for t in handover.turns]
    assert heard == ["納付書をなくしてしまいました", "もう一度お願いします", "[DTMF 0]"]


def test_a_checkpoint_puts_back_a_pending_choice(understanding):
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    d.on_utterance(TWO_TOPICS)
    mark = d.checkpoint()
    d.on_utterance("いいえ")
    assert d.state is State.LISTENING and d.misses == 1
    mark.restore()
    assert d.state is State.CHOOSING and d.misses == 0
    reply = d.on_dtmf("2")
    assert reply.kind == "answer" and d.last_heard == "[DTMF 2]"


def test_a_checkpoint_undoes_a_turn(call):
    call.on_utterance("納付書をなくしてしまいました")
    saved = call.checkpoint()
    call.on_utterance("以上です")
    assert call.state is State.ENDED
    saved.restore()
    assert call.state is State.LISTENING and len(call.turns) == 1


def test_last_heard_is_the_hypothesis_acted_on(call):
    assert call.last_heard is None
    call.on_utterance("ゴミの", ["納付書をなくしてしまいました"])
    assert call.last_heard == "納付書をなくしてしまいました"  # the FAQ explained it, not 「ゴミの」
    assert call.turns[-1].heard == call.last_heard
    call.on_no_input()
    assert call.last_heard == ""
    call.on_dtmf("5")  # ignored: no turn
    assert call.last_heard == ""


def test_turns_is_a_copy(call):
    call.on_utterance("納付書をなくしてしまいました")
    call.turns.clear()
    assert len(call.turns) == 1


def test_a_caller_who_asks_for_a_moment_is_waited_for(call, faq):
    """「ちょっと待ってください」 is answered with a wait, not taken as a question (it shares
    its words with deferring a payment, a staff topic); the bot listens longer than usual,
    and a question asked afterwards is answered as any other."""
    reply = call.on_utterance("あ、ちょっと待ってください")
    assert reply.kind == "hold" and reply.text == prompts.HOLD
    assert reply.patient and reply.next is Next.LISTEN and not reply.expect_yes_no
    assert call.turns[-1].action == "hold" and call.misses == 0
    reply = call.on_utterance("納付書をなくしてしまいました")
    assert reply.kind == "answer" and not reply.patient
    assert faq.answer_text("payment.lost-notice") in reply.text
    # A repeat still repeats the answer, not the words about waiting.
    call.on_utterance("少々お待ちいただけますか")
    assert faq.answer_text("payment.lost-notice") in call.on_utterance("もう一度お願いします").text


def test_a_silence_after_a_hold_asks_whether_the_caller_is_ready(call):
    """The longer wait runs out: the bot asks once whether the caller is ready, and that
    silence is not counted against them; silences after it count as usual."""
    call.on_utterance("ちょっと待ってもらえますか")
    reply = call.on_no_input()
    assert reply.kind == "hold_over" and reply.parts == (prompts.HOLD_OVER, prompts.GO_AHEAD)
    assert not reply.patient and call.silences == 0 and call.misses == 0
    assert call.on_no_input().kind == "reprompt"
    assert call.on_no_input().next is Next.TRANSFER


def test_a_hold_keeps_the_question_put_to_the_caller(call, understanding, faq, monkeypatch):
    """Asked to confirm a topic, the caller asks for a moment: the confirmation stays open,
    so 「はい」 after the pause answers it, and when the pause runs out it is asked again."""
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    reply = call.on_utterance("はい、ちょっと待ってくださいね")
    assert reply.kind == "hold" and reply.expect_yes_no and call.state is State.CONFIRMING
    reply = call.on_no_input()
    assert reply.kind == "hold_over" and reply.expect_yes_no
    assert reply.parts[0] == prompts.HOLD_OVER_AGAIN and "口座振替" in reply.parts[1]
    reply = call.on_utterance("はい")
    assert reply.kind == "answer"
    assert faq.answer_text("payment.account-transfer") in reply.text


def test_a_hold_keeps_a_choice_open(understanding):
    d = Dialogue(understanding, now=lambda: OPEN)
    d.start()
    offered = d.on_utterance(TWO_TOPICS)
    assert offered.kind == "choose"
    assert d.on_utterance("ちょっと待ってください").kind == "hold"
    assert d.state is State.CHOOSING
    reply = d.on_no_input()
    assert reply.kind == "hold_over" and reply.parts[1:] == offered.parts
    assert d.on_dtmf("2").kind == "answer"


def test_a_checkpoint_undoes_a_hold(call):
    mark = call.checkpoint()
    call.on_utterance("ちょっと待ってください")
    assert call.holding
    mark.restore()
    assert not call.holding and call.on_no_input().kind == "reprompt"


def test_a_caller_checking_the_line_hears_the_bot_is_listening(call, understanding, monkeypatch):
    """「もしもし」 is not a question the bot failed to hear (no 「うまくお聞き取りでき
    ませんでした」, no step towards staff): the bot says it is listening, and puts again a
    question still open."""
    call.on_no_input()
    reply = call.on_utterance("もしもし")
    assert reply.kind == "resume" and reply.parts == (prompts.RESUME, prompts.GO_AHEAD)
    assert call.misses == 1 and not reply.expect_yes_no
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    reply = call.on_utterance("もしもし、聞こえてますか")
    assert reply.kind == "resume" and reply.expect_yes_no and call.state is State.CONFIRMING
    assert reply.parts[0] == prompts.RESUME and "口座振替" in reply.parts[1]
    assert call.on_utterance("はい").kind == "answer"


def test_talk_in_the_room_while_the_caller_is_away_is_not_answered(call, faq):
    """While the caller fetches something, what they say to someone else (heard as words
    the bot cannot place) gets the hold again, not a re-prompt; the caller coming back is
    told the bot is listening, and their question is answered."""
    call.on_utterance("ちょっと待ってください")
    reply = call.on_utterance("ねえ、あれどこにしまったっけ")
    assert reply.kind == "hold" and reply.patient and call.misses == 0
    reply = call.on_utterance("お待たせしました")
    assert reply.kind == "resume" and not reply.patient
    reply = call.on_utterance("納付書をなくしてしまいました")
    assert reply.kind == "answer" and faq.answer_text("payment.lost-notice") in reply.text
    # Not while the caller is on the line: then words the bot cannot place are asked again.
    assert call.on_utterance("ねえ、あれどこにしまったっけ").kind == "reprompt"


def test_coming_back_from_a_hold_puts_the_open_question_again(call, understanding, monkeypatch):
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    call.on_utterance("ちょっと待ってください")
    reply = call.on_utterance("お待たせしました")
    assert reply.kind == "resume" and reply.expect_yes_no and call.state is State.CONFIRMING
    assert "口座振替" in reply.parts[1]
    assert call.on_utterance("はい").kind == "answer" and call.misses == 0


def test_more_time_asked_for_after_a_hold_is_a_hold_and_elsewhere_a_deferral(call):
    """「まだです、もう少し」 after 「ご準備はいかがでしょうか」 asks for more time on the
    phone; the same words out of the blue ask to defer a payment, which staff take."""
    call.on_utterance("ちょっと待ってください")
    assert call.on_no_input().kind == "hold_over"
    reply = call.on_utterance("まだです、もう少し待ってください")
    assert reply.kind == "hold" and reply.patient and call.turns[-1].faq_id is None
    assert call.on_utterance("もう少し").kind == "hold"
    call.on_utterance("口座振替の申し込みはどうすればいいですか")
    reply = call.on_utterance("もう少し待ってもらえないでしょうか")
    assert reply.kind == "transfer" and reply.handover.turns[-1].faq_id == "payment.cannot-pay"


def test_a_hold_is_not_taken_for_a_no_or_a_position(call, understanding, monkeypatch):
    """「いや、ちょっと待って」 to a confirmation, or 「前の書類を探しますので」 to a choice, asks
    for a moment: it neither denies the topic nor picks the first one."""
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    reply = call.on_utterance("いや、ちょっと待ってください")
    assert reply.kind == "hold" and call.state is State.CONFIRMING and call.misses == 0
    monkeypatch.undo()
    call.on_utterance("口座振替の申し込みはどうすればいいですか")
    assert call.on_utterance(TWO_TOPICS).kind == "choose"
    reply = call.on_utterance("前の書類を探しますので")
    assert reply.kind == "hold" and call.state is State.CHOOSING


def test_an_idle_key_or_a_rustle_does_not_end_the_wait(call):
    """A key that means nothing leaves the caller their longer wait; speech heard as
    nothing (paper, a cough) while they are away gets a short 「はい」 and the wait goes on,
    where otherwise it counts as silence."""
    call.on_utterance("ちょっと待ってください")
    assert call.on_dtmf("5") is None and call.holding
    reply = call.on_noise()
    assert reply.kind == "hold" and reply.text == prompts.HOLD_STILL and reply.patient
    assert call.on_no_input().kind == "hold_over"
    assert call.on_noise().kind == "reprompt"  # no longer away: as a silence


def test_back_from_a_hold_the_caller_answers_the_open_question(call, understanding, monkeypatch):
    """「いえ、まだです」 to the question put again after a hold asks for more time, not a
    denial; 「お待たせしました、はい、そうです」 answers it; and after a hold the question
    is put again without 「ご準備はいかがでしょうか」 before it (「はい」 would answer both)."""
    require_confirmation(understanding, monkeypatch)
    call.on_utterance("口座振替にしたい")
    call.on_utterance("ちょっと待ってください")
    reply = call.on_no_input()
    assert reply.parts[0] == prompts.HOLD_OVER_AGAIN and reply.expect_yes_no
    assert call.on_utterance("いえ、まだです").kind == "hold" and call.misses == 0
    reply = call.on_utterance("お待たせしました、はい、そうです")
    assert reply.kind == "answer"


def test_keys_and_noise_around_a_hold(call):
    """1 or 2 with nothing to answer leaves the hold; noise while away is no turn of the
    caller's (a long search does not reach the turn limit); a failed transfer ends it."""
    call.on_utterance("ちょっと待ってください")
    assert call.on_dtmf("1") is None and call.holding
    for _ in range(20):
        reply = call.on_noise()
        assert reply.kind == "hold" and reply.turn is call.turns[-1]  # logged as a turn
    assert call.on_utterance("納付書をなくしてしまいました").kind == "answer"  # no turn limit
    call.on_transfer_failed()
    assert not call.holding and call.on_no_input().kind == "reprompt"
