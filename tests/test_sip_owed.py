"""The 503s the SIP dispatcher owes to callers it told 100 Trying (telephony/sip_owed.py):
kept only while owed, repeated over UDP on RFC 3261's schedule until acknowledged, never
more than the cap, never longer than the give-up time."""

from __future__ import annotations

from telephony.sip_owed import T2_S, OwedAnswer, OwedAnswers


def answer(branch: str = "z9hG4bK-1", *, reliable: bool = False) -> OwedAnswer:
    return OwedAnswer(
        b"SIP/2.0 503 Service Unavailable\r\n\r\n",
        ("127.0.0.1", 5060),
        None,
        reliable=reliable,
        branch=branch,
        to_tag="own",
        source="127.0.0.1",
        from_tag="caller-1",
        cseq=1,
    )


def test_the_workers_answer_settles_only_its_own_invite():
    owed = OwedAnswers(cap=4, give_up_s=32.0)
    owed.owe("a", answer("z9hG4bK-1"))
    owed.settle("a", "z9hG4bK-other")  # another transaction's answer
    assert len(owed) == 1
    owed.settle("a", "z9hG4bK-1")
    assert len(owed) == 0
    assert owed.fail("a", 0.0) is None  # nothing owed any more: nothing sent


def test_a_failed_answer_repeats_on_doubling_intervals_until_acknowledged():
    owed = OwedAnswers(cap=4, give_up_s=32.0)
    owed.owe("a", answer())
    assert owed.fail("a", 0.0) is not None
    times = [t / 10 for t in range(0, 200)]
    repeats = [t for t in times if owed.due(t)]
    gaps = [b - a for a, b in zip([0.0, *repeats], repeats, strict=False)]
    assert gaps[:3] == [0.5, 1.0, 2.0] and max(gaps) == T2_S
    assert not owed.acknowledged("a", "someone-else")
    assert owed.repeated_invite("a", "z9hG4bK-1", "127.0.0.1", "caller-1", 1) is not None
    assert owed.repeated_invite("a", "z9hG4bK-2", "127.0.0.1", "caller-1", 1) is None
    assert owed.repeated_invite("a", "z9hG4bK-1", "127.0.0.2", "caller-1", 1) is None
    assert owed.repeated_invite("a", "z9hG4bK-1", "127.0.0.1", "someone", 1) is None
    assert owed.repeated_invite("a", "z9hG4bK-1", "127.0.0.1", "caller-1", 9) is None
    assert owed.acknowledged("a", "own")
    assert len(owed) == 0 and owed.due(100.0) == []


def test_failing_answers_are_given_up_after_the_time_and_capped():
    owed = OwedAnswers(cap=2, give_up_s=32.0)
    for call in "abc":
        owed.owe(call, answer())
        owed.fail(call, 0.0)
    assert len(owed) == 2  # the oldest dropped
    assert owed.repeated_invite("a", "z9hG4bK-1", "127.0.0.1", "caller-1", 1) is None
    assert owed.due(33.0) == [] and len(owed) == 0


def test_an_answer_over_tcp_is_sent_once_and_not_kept():
    owed = OwedAnswers(cap=2, give_up_s=32.0)
    owed.owe("a", answer(reliable=True))
    assert owed.fail("a", 0.0) is not None
    assert len(owed) == 0


def test_a_call_ended_another_way_owes_nothing_but_a_503_sent_stays_until_acked():
    owed = OwedAnswers(cap=2, give_up_s=32.0)
    owed.owe("a", answer())
    owed.forget("a")
    assert len(owed) == 0
    owed.owe("b", answer())
    owed.fail("b", 0.0)
    owed.forget("b")
    assert len(owed) == 1


def test_an_invite_the_worker_has_not_spoken_of_is_relayed_again_until_it_does():
    owed = OwedAnswers(cap=2, give_up_s=32.0)
    owed.owe("a", answer())
    owed.relayed("a", b"INVITE", ("127.0.0.1", 7000), 0.0)
    owed.relayed("a", b"INVITE again", ("127.0.0.1", 7001), 0.1)  # the first copy's kept
    assert owed.unheard_due(0.4) == []
    assert owed.unheard_due(0.5) == [(("127.0.0.1", 7000), b"INVITE")]
    assert owed.unheard_due(1.0) == []  # next after a second
    assert len(owed.unheard_due(1.5)) == 1
    owed.stop_relaying("a")
    assert owed.unheard_due(10.0) == []
    owed.owe("b", answer())
    owed.relayed("b", b"INVITE", ("127.0.0.1", 7000), 0.0)
    owed.fail("b", 0.1)  # given up: the worker is not sent it again
    assert owed.unheard_due(10.0) == []
