"""Event sequences of calls in which the caller waits for the bot, at known times.

Each function returns what the call core emits for one call, on the call's own clock
(``t_ms``) from ``start``: the greeting, then caller questions and the bot's replies, then
``CallEnded``. The report and page tests feed them through the real ``CallRecorder``.
The outcome is a parameter: ``hung_up_waiting`` is what the call core emits for a caller
who hangs up while waiting; ``hung_up`` is what it emitted before it told the two apart
(the records of such calls must be read the same way).
"""

from __future__ import annotations

import datetime as dt

from voicebot.events import (
    BotSpeechStarted,
    BotSpeechStopped,
    CallEnded,
    CallerSpeechEnded,
    CallerSpeechStarted,
    CallEvent,
    CallStarted,
    IntentDecided,
    Recognized,
)

QUESTION = "納付書をなくしたので再発行してほしいです"
FAQ_ID = "payment.lost-notice"
ANSWER = "納付書の再発行は、納税課の窓口またはお電話で承ります。"
NOT_A_TAX = "申し訳ありません、税金以外の料金については、こちらではご案内できません。"
FILLER = "お調べしますので、少々お待ちください。"
GOODBYE = "ありがとうございました"


class _Clock:
    """Builds events of one call at given call times."""

    def __init__(self, call_id: str, start: dt.datetime):
        self.call_id = call_id
        self.t0 = start.timestamp()

    def at(self, ms: float) -> dict:
        return {"call_id": self.call_id, "t_ms": ms, "wall_time": self.t0 + ms / 1000.0}


def _greeting(c: _Clock) -> list[CallEvent]:
    return [
        CallStarted(**c.at(0.0), transport="sip", caller="0312345678"),
        BotSpeechStarted(**c.at(200.0), text="お電話ありがとうございます。", kind="greeting"),
        BotSpeechStopped(**c.at(4200.0)),
    ]


def _question(
    c: _Clock, start_ms: float, end_ms: float, text: str, action: str, faq_id: str | None
) -> list[CallEvent]:
    """The caller speaks from ``start_ms`` to ``end_ms``; the bot decides 500 ms later."""
    return [
        CallerSpeechStarted(**c.at(start_ms)),
        CallerSpeechEnded(**c.at(end_ms + 100), speech_start_ms=start_ms, last_speech_ms=end_ms),
        Recognized(**c.at(end_ms + 450), text=text, final=True, processing_ms=350.0),
        IntentDecided(
            **c.at(end_ms + 500),
            text=text,
            faq_id=faq_id,
            score=0.91 if faq_id else 0.0,
            action=action,
            candidates=[{"faq_id": faq_id, "score": 0.91}] if faq_id else [],
        ),
    ]


def _ended(c: _Clock, at_ms: float, outcome: str) -> CallEnded:
    return CallEnded(**c.at(at_ms), outcome=outcome, duration_ms=at_ms)


def silent_after_question(
    call_id: str, start: dt.datetime, outcome: str = "hung_up_waiting"
) -> list[CallEvent]:
    """The question is understood (answer decided at 7.5 s) but nothing is played; the
    caller hangs up 23 s after finishing it, the answer still being synthesised."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        _ended(c, 30000.0, outcome),
    ]


def hung_up_one_second_into_answer(
    call_id: str, start: dt.datetime, outcome: str = "hung_up_waiting"
) -> list[CallEvent]:
    """The answer starts 2.5 s after the question (at 9.5 s); the caller hangs up 1 s in."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        BotSpeechStarted(**c.at(9500.0), text=ANSWER, kind="answer", latency_ms=2500.0),
        _ended(c, 10500.0, outcome),
    ]


def filler_then_answer_then_goodbye(call_id: str, start: dt.datetime) -> list[CallEvent]:
    """A filler at 0.9 s, the answer at 4 s after the question (played whole), then the
    caller's goodbye and the bot's; the call ends with the bot's goodbye (completed)."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        BotSpeechStarted(**c.at(7900.0), text=FILLER, kind="filler", latency_ms=900.0),
        BotSpeechStopped(**c.at(9900.0)),
        BotSpeechStarted(**c.at(11000.0), text=ANSWER, kind="answer", latency_ms=4000.0),
        BotSpeechStopped(**c.at(21000.0)),
        *_question(c, 22000.0, 23000.0, GOODBYE, "goodbye", None),
        BotSpeechStarted(
            **c.at(23600.0), text="お電話ありがとうございました。", kind="goodbye", latency_ms=600.0
        ),
        BotSpeechStopped(**c.at(26000.0)),
        _ended(c, 26100.0, "completed"),
    ]


def told_not_a_tax_then_hung_up(call_id: str, start: dt.datetime) -> list[CallEvent]:
    """A question about the water bill: the bot says where to ask instead (no FAQ entry),
    the caller hears it out and hangs up."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, "水道料金の支払い方法を知りたい", "not_a_tax", None),
        BotSpeechStarted(**c.at(7400.0), text=NOT_A_TAX, kind="not_a_tax", latency_ms=400.0),
        BotSpeechStopped(**c.at(15000.0)),
        _ended(c, 16000.0, "hung_up"),
    ]


def answered_then_said_goodbye_and_hung_up(call_id: str, start: dt.datetime) -> list[CallEvent]:
    """The answer plays whole; the caller says goodbye and hangs up before the bot's own
    goodbye starts. Served, and not left waiting: the goodbye asked for nothing."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        BotSpeechStarted(**c.at(7600.0), text=ANSWER, kind="answer", latency_ms=600.0),
        BotSpeechStopped(**c.at(17600.0)),
        *_question(c, 18000.0, 19000.0, GOODBYE, "goodbye", None),
        _ended(c, 19200.0, "hung_up"),
    ]


def hung_up_during_the_bots_goodbye(
    call_id: str, start: dt.datetime, outcome: str = "hung_up_waiting"
) -> list[CallEvent]:
    """The answer plays whole; the caller says goodbye and hangs up 1 s into the bot's
    goodbye (the call core records that as ``hung_up_waiting``: a reply cut in its first
    3 s). The caller was served and waited for nothing."""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        BotSpeechStarted(**c.at(7600.0), text=ANSWER, kind="answer", latency_ms=600.0),
        BotSpeechStopped(**c.at(17600.0)),
        *_question(c, 18000.0, 19000.0, GOODBYE, "goodbye", None),
        BotSpeechStarted(
            **c.at(19600.0), text="お電話ありがとうございました。", kind="goodbye", latency_ms=600.0
        ),
        _ended(c, 20600.0, outcome),
    ]


def cut_off_after_answer(call_id: str, start: dt.datetime) -> list[CallEvent]:
    """The answer plays whole, then the process taking the call dies: no ``CallEnded``.
    (The call is closed later as ``error`` or ``abandoned`` by the call records.)"""
    c = _Clock(call_id, start)
    return [
        *_greeting(c),
        *_question(c, 5000.0, 7000.0, QUESTION, "answer", FAQ_ID),
        BotSpeechStarted(**c.at(7600.0), text=ANSWER, kind="answer", latency_ms=600.0),
        BotSpeechStopped(**c.at(17600.0)),
    ]
