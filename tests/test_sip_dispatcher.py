"""The public SIP port (telephony/sip_dispatcher.py) on its own, with real sockets on
loopback: the PBX and the workers are hand-driven SIP clients (tests/sipp/sip_client.py),
so every header the dispatcher adds, rewrites or takes out can be read on both sides.

tests/test_sip_hostile_*.py cover what a stranger or a broken peer can do; this module
pins down the ordinary relay: which worker a call goes to, what each side sees, and
when a call slot is taken and given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sipp.sip_client import SipClient, new_branch

from telephony.sip_dispatcher import (
    ALLOWED_METHODS,
    BRANCH_PREFIX,
    WORKER_RELEASE_S,
    SipDispatcher,
)
from telephony.sip_limits import SipLimits
from telephony.sip_message import SipMessage, parse_datagram, parse_via

PUBLIC = "192.0.2.10"  # the address the PBX is told (TEST-NET-1: never routed)
QUIET_S = 0.5  # how long "nothing arrives" is watched for


class Dispatch:
    """A started dispatcher, its workers (SIP clients on loopback) and a PBX."""

    def __init__(self, dispatcher: SipDispatcher, workers: list[SipClient], pbx: SipClient):
        self.d = dispatcher
        self.workers = workers
        self.pbx = pbx
        self.expired: list[str] = []

    @property
    def port(self) -> int:
        return self.d.port


@contextlib.asynccontextmanager
async def dispatch(
    workers: int = 1,
    capacity: int = 4,
    max_calls: int = 8,
    public_host: str | None = None,
    worker_release_s: float = WORKER_RELEASE_S,
    **limits: float,
):
    expired: list[str] = []
    dispatcher = SipDispatcher(
        "127.0.0.1",
        0,
        allowed_peers=["127.0.0.1"],
        max_calls=max_calls,
        public_host=public_host,
        limits=SipLimits(**limits),
        on_call_expired=expired.append,
        worker_release_s=worker_release_s,
    )
    await dispatcher.start()
    clients = [await SipClient.open() for _ in range(workers)]
    for index, worker in enumerate(clients):
        dispatcher.add_worker(index, (worker.host, worker.port), capacity)
    setup = Dispatch(dispatcher, clients, await SipClient.open())
    setup.expired = expired
    try:
        yield setup
    finally:
        for client in (*clients, setup.pbx):
            client.close()
        await dispatcher.stop()


def request(method: str, call_id: str):
    return lambda m: m.is_request and m.method == method and m.call_id == call_id


def final(call_id: str, method: str = "INVITE"):
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == method and m.status >= 200
    )


def respond(worker: SipClient, to: SipMessage, status: int, reason: str, port: int) -> None:
    """The worker's response to a relayed request, as pjsua makes it: every Via and
    Record-Route echoed, its own tag (unless the request had one) and Contact."""
    vias = "\n".join(f"Via: {v}" for v in to.get_all("via"))
    routes = "\n".join(f"Record-Route: {r}" for r in to.get_all("record-route"))
    worker.send(
        f"""SIP/2.0 {status} {reason}
        {vias}
        {routes}
        From: {to.get("from")}
        To: {to.get("to") if to.to_tag else to.get("to") + ";tag=worker-1"}
        Call-ID: {to.call_id}
        CSeq: {to.get("cseq")}
        Contact: <sip:taxbot@{worker.host}:{worker.port}>
        """,
        port,
    )


async def nothing_arrives(client: SipClient, match, seconds: float = QUIET_S) -> bool:
    try:
        await client.expect(match, timeout=seconds)
    except TimeoutError:
        return True
    return False


async def established(s: Dispatch, call_id: str, worker: int | None = None):
    """INVITE from the PBX, 200 from the worker it reached, ACK: (worker, INVITE, 200)."""
    s.pbx.invite(s.port, call_id)
    reached, invite = await relayed(s, request("INVITE", call_id))
    assert worker is None or reached is s.workers[worker]
    respond(reached, invite, 200, "OK", s.port)
    ok = await s.pbx.expect(final(call_id))
    s.pbx.in_dialog("ACK", s.port, ok, 1)
    await reached.expect(request("ACK", call_id))
    return reached, invite, ok


async def invited(s: Dispatch) -> tuple[str, str, SipClient, SipMessage]:
    """A new call's INVITE from the PBX, relayed: its Call-ID, the PBX's branch, the worker
    that has it and the INVITE as the worker received it."""
    call_id = uuid.uuid4().hex
    branch = s.pbx.invite(s.port, call_id)
    worker, invite = await relayed(s, request("INVITE", call_id))
    return call_id, branch, worker, invite


async def relayed(s: Dispatch, match) -> tuple[SipClient, SipMessage]:
    """The worker that received a matching message, and the message."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for worker in s.workers:
            for message in worker.received:
                if match(message):
                    return worker, message
        await asyncio.sleep(0.02)
    raise TimeoutError("no worker received the message")


# -- requests in ------------------------------------------------------------------------------
def test_an_invite_reaches_a_worker_with_the_dispatchers_via_and_record_route():
    async def scenario():
        async with dispatch() as s:
            call_id = uuid.uuid4().hex
            branch = s.pbx.invite(s.port, call_id)
            _worker, invite = await relayed(s, request("INVITE", call_id))
            return s.d, s.pbx.port, branch, invite, s.d.calls_in_progress, s.d.free_slots

    d, pbx_port, branch, invite, in_progress, free = asyncio.run(scenario())
    own, sender = (parse_via(v) for v in invite.get_all("via"))
    assert (own.host, own.port) == ("127.0.0.1", d.port)
    assert own.param("branch").startswith(BRANCH_PREFIX) and d.sent_through_here(own)
    assert sender.param("branch") == branch
    assert (sender.param("received"), sender.param("rport")) == ("127.0.0.1", str(pbx_port))
    assert invite.get_all("record-route") == [f"<sip:127.0.0.1:{d.port};lr>"]
    assert invite.get("max-forwards") == "69"
    assert b"m=audio 9 RTP/AVP 0" in invite.body  # the SDP as the PBX sent it
    assert (in_progress, free) == (1, 3)


def test_the_answer_reaches_the_pbx_without_the_dispatcher_and_with_the_public_contact():
    """The PBX sees one user agent at the public address: the dispatcher's Via and
    Record-Route are taken out of the worker's 200, and its Contact names the public
    address and port, not the worker's loopback one."""

    async def scenario():
        async with dispatch(public_host=PUBLIC) as s:
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            worker, invite = await relayed(s, request("INVITE", call_id))
            respond(worker, invite, 200, "OK", s.port)
            return s.port, s.pbx.port, invite, await s.pbx.expect(final(call_id))

    port, pbx_port, invite, ok = asyncio.run(scenario())
    assert parse_via(invite.get("via")).host == PUBLIC  # the dispatcher's own Via
    assert ok.status == 200
    vias = [parse_via(v) for v in ok.get_all("via")]
    assert [(v.host, v.port) for v in vias] == [("127.0.0.1", pbx_port)]
    assert ok.get_all("record-route") == []
    assert ok.get("contact") == f"<sip:taxbot@{PUBLIC}:{port}>"
    assert ok.get("to").endswith(";tag=worker-1")


def test_calls_go_to_the_least_loaded_worker_and_stay_with_it():
    """Two workers of two slots: the second call goes to the other worker; every later
    request of a call (ACK, BYE) reaches the worker that has it."""

    async def scenario():
        async with dispatch(workers=2, capacity=2) as s:
            first, second = uuid.uuid4().hex, uuid.uuid4().hex
            worker_a, _, ok_a = await established(s, first)
            worker_b, _, _ = await established(s, second)
            s.pbx.in_dialog("BYE", s.port, ok_a, 2)
            bye_at, _ = await relayed(s, request("BYE", first))
            return s.workers, worker_a, worker_b, bye_at

    workers, worker_a, worker_b, bye_at = asyncio.run(scenario())
    assert {worker_a, worker_b} == set(workers)
    assert bye_at is worker_a


def test_no_free_slot_is_503_and_a_slot_comes_back_when_its_call_ends():
    """max_calls = 1: a second INVITE gets 503 from the dispatcher itself; a worker's
    final failure response gives the slot back, and so does call_ended() (the worker
    reporting the call over)."""

    async def scenario():
        async with dispatch(max_calls=1) as s:
            first, second, third, fourth = (uuid.uuid4().hex for _ in range(4))
            s.pbx.invite(s.port, first)
            worker, invite = await relayed(s, request("INVITE", first))
            s.pbx.invite(s.port, second)
            busy = await s.pbx.expect(final(second))
            second_relayed = not await nothing_arrives(worker, request("INVITE", second))
            respond(worker, invite, 486, "Busy Here", s.port)
            refused = await s.pbx.expect(final(first))
            s.pbx.invite(s.port, third)
            await relayed(s, request("INVITE", third))
            s.d.call_ended(third)
            free_after_end = s.d.free_slots
            s.pbx.invite(s.port, fourth)
            await relayed(s, request("INVITE", fourth))
            return busy, second_relayed, refused, free_after_end, s.d.rejected

    busy, second_relayed, refused, free_after_end, rejected = asyncio.run(scenario())
    assert busy.status == 503
    assert not second_relayed
    assert refused.status == 486  # relayed to the PBX, and the slot freed
    assert free_after_end == 1
    assert rejected == 1


def test_a_call_ended_by_bye_holds_its_slot_until_the_worker_reports_it_gone():
    """max_calls = 1: the PBX hangs up and the worker answers the BYE. pjsua frees the
    call a moment later, and only the worker knows when: until it reports the call gone,
    a new INVITE gets 503 here instead of being sent to a worker that would answer 486
    Busy Here; after the report, the next INVITE is relayed."""

    async def scenario():
        async with dispatch(max_calls=1) as s:
            call_id, early, late = (uuid.uuid4().hex for _ in range(3))
            worker, _invite, ok = await established(s, call_id)
            s.pbx.in_dialog("BYE", s.port, ok, 2)
            bye = await worker.expect(request("BYE", call_id))
            respond(worker, bye, 200, "OK", s.port)
            await s.pbx.expect(final(call_id, "BYE"))
            s.pbx.invite(s.port, early)
            refused = await s.pbx.expect(final(early))
            not_relayed = await nothing_arrives(worker, request("INVITE", early))
            s.d.call_ended(call_id)
            s.pbx.invite(s.port, late)
            reached, _ = await relayed(s, request("INVITE", late))
            return refused.status, not_relayed, reached is worker

    status, not_relayed, relayed_after_report = asyncio.run(scenario())
    assert status == 503
    assert not_relayed
    assert relayed_after_report


def test_an_answer_never_acked_holds_its_slot_past_timer_h_until_the_worker_reports():
    """The worker answered 200 and no ACK came: at Timer H the call is given up here (the
    owner is told, so that the worker hangs it up) but pjsua still has it, so its slot
    stays taken until the worker reports the call gone."""

    async def scenario():
        async with dispatch(max_calls=1, timer_h_s=0.3) as s:
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            worker, invite = await relayed(s, request("INVITE", call_id))
            respond(worker, invite, 200, "OK", s.port)
            await s.pbx.expect(final(call_id))
            deadline = time.monotonic() + 10
            while not s.expired and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            taken_after_timer_h = s.d.calls_in_progress
            s.d.call_ended(call_id)
            return list(s.expired), taken_after_timer_h, s.d.calls_in_progress

    expired, taken_after_timer_h, taken_after_report = asyncio.run(scenario())
    assert len(expired) == 1
    assert taken_after_timer_h == 1
    assert taken_after_report == 0


def test_a_slot_the_worker_never_reports_free_comes_back_after_worker_release_s():
    """A worker that never reports an ended call gone (it lost it) does not keep its
    slot for ever: after ``worker_release_s`` the slot is free."""

    async def scenario():
        async with dispatch(max_calls=1, worker_release_s=0.3, timer_b_s=0.4) as s:
            call_id = uuid.uuid4().hex
            worker, _invite, ok = await established(s, call_id)
            s.pbx.in_dialog("BYE", s.port, ok, 2)
            bye = await worker.expect(request("BYE", call_id))
            respond(worker, bye, 200, "OK", s.port)
            await s.pbx.expect(final(call_id, "BYE"))
            taken_at_once = s.d.calls_in_progress
            deadline = time.monotonic() + 10
            while s.d.calls_in_progress and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return taken_at_once, s.d.calls_in_progress

    taken_at_once, taken_later = asyncio.run(scenario())
    assert (taken_at_once, taken_later) == (1, 0)


def test_while_stopping_a_new_invite_gets_503():
    async def scenario():
        async with dispatch() as s:
            s.d.accepting = False
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            answer = await s.pbx.expect(final(call_id))
            return answer.status, await nothing_arrives(s.workers[0], request("INVITE", call_id))

    status, not_relayed = asyncio.run(scenario())
    assert status == 503
    assert not_relayed


def test_requests_outside_any_call_are_answered_by_the_dispatcher():
    """A BYE for a Call-ID nobody has gets 481; a REFER (the far end steering the call)
    gets 405 with the methods allowed; OPTIONS, which any worker answers, is relayed."""

    async def scenario():
        async with dispatch() as s:
            stray, refer, options = (uuid.uuid4().hex for _ in range(3))
            fake_ok = SipMessage(
                "SIP/2.0 200 OK",
                [
                    ("From", f"<sip:0312345678@127.0.0.1:{s.pbx.port}>;tag=caller-1"),
                    ("To", f"<sip:taxbot@127.0.0.1:{s.port}>;tag=gone"),
                    ("Call-ID", stray),
                    ("Contact", f"<sip:taxbot@127.0.0.1:{s.port}>"),
                ],
            )
            s.pbx.in_dialog("BYE", s.port, fake_ok, 2)
            no_call = await s.pbx.expect(final(stray, "BYE"))
            s.pbx.send(
                f"""REFER sip:taxbot@127.0.0.1:{s.port} SIP/2.0
                Via: SIP/2.0/UDP 127.0.0.1:{s.pbx.port};branch={new_branch()};rport
                From: <sip:pbx@127.0.0.1>;tag=r
                To: <sip:taxbot@127.0.0.1>
                Call-ID: {refer}
                CSeq: 1 REFER
                Refer-To: <sip:elsewhere@198.51.100.7>
                """,
                s.port,
            )
            refused = await s.pbx.expect(final(refer, "REFER"))
            s.pbx.send(
                f"""OPTIONS sip:taxbot@127.0.0.1:{s.port} SIP/2.0
                Via: SIP/2.0/UDP 127.0.0.1:{s.pbx.port};branch={new_branch()};rport
                From: <sip:pbx@127.0.0.1>;tag=o
                To: <sip:taxbot@127.0.0.1>
                Call-ID: {options}
                CSeq: 1 OPTIONS
                """,
                s.port,
            )
            _, relayed_options = await relayed(s, request("OPTIONS", options))
            return no_call, refused, relayed_options, s.d.calls_in_progress

    no_call, refused, options, in_progress = asyncio.run(scenario())
    assert no_call.status == 481
    assert refused.status == 405
    assert refused.get("allow") == ", ".join(ALLOWED_METHODS)
    assert options.method == "OPTIONS"
    assert in_progress == 0  # OPTIONS takes no call slot


# -- strangers and forged responses ---------------------------------------------------------
def test_a_strangers_invite_gets_403_and_nothing_of_it_reaches_a_worker():
    async def scenario():
        async with dispatch() as s:
            stranger = await SipClient.open("127.0.0.2")
            try:
                invite, options = uuid.uuid4().hex, uuid.uuid4().hex
                stranger.invite(s.port, invite)
                refused = await stranger.expect(final(invite))
                stranger.send(
                    f"""OPTIONS sip:taxbot@127.0.0.1:{s.port} SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.2:{stranger.port};branch={new_branch()}
                    From: <sip:x@127.0.0.2>;tag=x
                    To: <sip:taxbot@127.0.0.1>
                    Call-ID: {options}
                    CSeq: 1 OPTIONS
                    """,
                    s.port,
                )
                unanswered = await nothing_arrives(stranger, final(options, "OPTIONS"))
                worker_quiet = await nothing_arrives(s.workers[0], lambda m: True)
                return refused, unanswered, worker_quiet, s.d.dropped_from_strangers, s.d.rejected
            finally:
                stranger.close()

    refused, unanswered, worker_quiet, dropped, rejected = asyncio.run(scenario())
    assert refused.status == 403
    assert len(refused.get_all("via")) == 1  # the minimal answer: top Via only
    assert unanswered and worker_quiet
    assert dropped == 2 and rejected == 1


def test_a_response_whose_via_the_dispatcher_did_not_sign_is_not_relayed():
    """A response must carry, on top, a Via this dispatcher added (its branch is a MAC
    under the dispatcher's secret); one made up by the PBX side goes nowhere."""

    async def scenario():
        async with dispatch() as s:
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            worker, invite = await relayed(s, request("INVITE", call_id))
            forged = parse_via(invite.get("via"))
            forged.set_param("branch", BRANCH_PREFIX + "0" * 36)
            vias = [str(forged), *invite.get_all("via")[1:]]
            s.pbx.send(
                "SIP/2.0 200 OK\n"
                + "".join(f"Via: {v}\n" for v in vias)
                + f"""From: {invite.get("from")}
                To: {invite.get("to")};tag=forged
                Call-ID: {call_id}
                CSeq: 1 INVITE
                """,
                s.port,
            )
            return await nothing_arrives(worker, final(call_id)), s.d.sent_through_here(forged)

    not_relayed, accepted = asyncio.run(scenario())
    assert not accepted
    assert not_relayed


# -- requests out -------------------------------------------------------------------------------
def test_a_workers_bye_reaches_the_pbx_through_the_dispatcher_and_the_worker_frees_the_slot():
    """The worker hangs up: its BYE, routed by the dispatcher's Record-Route, reaches the
    PBX with the dispatcher's Via on top, its Route taken out and its Contact public; the
    PBX's 200 goes back to the worker. The call's slot stays taken until the worker
    reports the call gone (pjsua frees it after the 200 has reached it)."""

    async def scenario():
        async with dispatch(public_host=PUBLIC) as s:
            call_id = uuid.uuid4().hex
            worker, invite, _ok = await established(s, call_id)
            in_call = s.d.calls_in_progress
            contact = invite.get("contact")
            worker.send(
                f"""BYE {contact[contact.index("<") + 1 : contact.index(">")]} SIP/2.0
                Via: SIP/2.0/UDP {worker.host}:{worker.port};branch={new_branch()};rport
                Route: {invite.get("record-route")}
                From: {invite.get("to")};tag=worker-1
                To: {invite.get("from")}
                Call-ID: {call_id}
                CSeq: 1 BYE
                Contact: <sip:taxbot@{worker.host}:{worker.port}>
                Max-Forwards: 70
                """,
                s.port,
            )
            bye = await s.pbx.expect(request("BYE", call_id))
            s.pbx.reply(bye, 200, "OK", s.port)
            answered = await worker.expect(final(call_id, "BYE"))
            after_answer = s.d.calls_in_progress
            s.d.call_ended(call_id)
            return s.port, worker, bye, answered, (in_call, after_answer, s.d.calls_in_progress)

    port, worker, bye, answered, taken = asyncio.run(scenario())
    own, sender = (parse_via(v) for v in bye.get_all("via"))
    assert own.host == PUBLIC and own.param("branch").startswith(BRANCH_PREFIX)
    assert (sender.host, sender.port) == ("127.0.0.1", worker.port)
    assert bye.get("route") is None
    assert bye.get("contact") == f"<sip:taxbot@{PUBLIC}:{port}>"
    assert bye.get("max-forwards") == "69"
    assert answered.status == 200
    assert [parse_via(v).port for v in answered.get_all("via")] == [worker.port]
    assert taken == (1, 1, 0)


def test_when_a_worker_dies_its_answered_calls_get_a_bye_from_the_dispatcher():
    """The worker carrying a call is removed (it died): the dispatcher ends the call
    towards the caller in the worker's place. The BYE goes to the caller's Contact along
    the caller's Record-Route set, from the worker's tag to the caller's, with a CSeq
    above the worker's own requests; once answered it is not sent again."""

    async def scenario():
        async with dispatch() as s:
            call_id = uuid.uuid4().hex
            proxy = f"<sip:{s.pbx.host}:{s.pbx.port};lr>"
            s.pbx.invite(s.port, call_id, extra=f"Record-Route: {proxy}")
            worker, invite = await relayed(s, request("INVITE", call_id))
            respond(worker, invite, 200, "OK", s.port)
            ok = await s.pbx.expect(final(call_id))
            s.pbx.in_dialog("ACK", s.port, ok, 1)
            await worker.expect(request("ACK", call_id))
            worker.send(  # the worker's own request in the dialog: CSeq 7
                f"""INFO sip:0312345678@{s.pbx.host}:{s.pbx.port} SIP/2.0
                Via: SIP/2.0/UDP {worker.host}:{worker.port};branch={new_branch()};rport
                Route: {invite.get_all("record-route")[0]}
                Route: {proxy}
                From: {invite.get("to")};tag=worker-1
                To: {invite.get("from")}
                Call-ID: {call_id}
                CSeq: 7 INFO
                Max-Forwards: 70
                """,
                s.port,
            )
            await s.pbx.expect(request("INFO", call_id))
            s.d.remove_worker(0)
            bye = await s.pbx.expect(request("BYE", call_id))
            s.pbx.reply(bye, 200, "OK", s.port)
            again = not await nothing_arrives(
                s.pbx, lambda m: m is not bye and request("BYE", call_id)(m), 2.0
            )
            return bye, s.d.byes_sent, again, s.d.calls_in_progress, proxy, s.pbx

    bye, sent, again, in_progress, proxy, pbx = asyncio.run(scenario())
    assert bye.request_uri == f"sip:0312345678@{pbx.host}:{pbx.port}"
    assert bye.get_all("route") == [proxy]
    assert bye.from_tag == "worker-1" and bye.to_tag == "caller-1"
    assert bye.cseq_number == 8
    assert "503" in (bye.get("reason") or "")
    assert sent == 1 and not again
    assert in_progress == 0


# -- deadlines ------------------------------------------------------------------------------------
def test_an_invite_left_unanswered_past_timer_b_gives_its_slot_back_and_reports_it():
    """The worker never answers: after Timer B the slot is free, the owner is told the
    Call-ID (so that the worker's side ends) and the caller, told 100 Trying, gets 503 from
    the dispatcher; an answer that comes later is not relayed."""

    async def scenario():
        async with dispatch(max_calls=1, timer_b_s=0.5, linger_s=5.0) as s:
            call_id, branch, worker, invite = await invited(s)
            deadline = time.monotonic() + 10
            while s.d.calls_in_progress and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            freed = s.d.calls_in_progress == 0
            expired_first = list(s.expired)
            given_up = await s.pbx.expect(final(call_id))
            s.pbx.in_dialog("ACK", s.port, given_up, 1, branch=branch)
            await asyncio.sleep(0.2)
            respond(worker, invite, 200, "OK", s.port)
            late_dropped = await nothing_arrives(
                s.pbx, lambda m: final(call_id)(m) and m.status != 503
            )
            return freed, expired_first, given_up, late_dropped, list(s.expired)

    freed, expired_first, given_up, late_dropped, expired = asyncio.run(scenario())
    assert freed
    assert len(expired_first) == 1
    assert given_up.status == 503
    assert late_dropped
    assert len(expired) == 2 and set(expired) == set(expired_first)


def test_an_invite_is_told_100_trying_at_once_and_the_workers_own_is_not_relayed():
    """A busy worker may take seconds to answer: the dispatcher says 100 Trying for the node
    at once (no To tag, every Via), so that the proxy in front does not take the node for
    dead; the worker's 100 stays here (hop by hop) and its final answer goes through."""

    async def scenario():
        async with dispatch() as s:
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            trying = await s.pbx.expect(lambda m: not m.is_request and m.call_id == call_id)
            worker, invite = await relayed(s, request("INVITE", call_id))
            respond(worker, invite, 100, "Trying", s.port)
            await asyncio.sleep(2.5)  # past the first times an unanswered INVITE goes again
            copies = invites_at(worker, call_id)
            respond(worker, invite, 200, "OK", s.port)
            ok = await s.pbx.expect(final(call_id))
            await asyncio.sleep(0.2)
            statuses = [m.status for m in s.pbx.responses(call_id, "INVITE")]
            return trying, ok, statuses, s.pbx, copies

    trying, ok, statuses, pbx, copies = asyncio.run(scenario())
    assert copies == 1  # the worker's 100 alone: never sent again
    assert trying.status == 100 and trying.to_tag is None
    assert parse_via(trying.get("via") or "").host == pbx.host
    assert ok.status == 200 and ok.to_tag == "worker-1"
    assert statuses == [100, 200]


def test_an_invite_repeated_after_the_answer_is_not_told_trying_nor_owed_a_503():
    """The caller's INVITE comes again after the worker's 200 (its copy of the 200 was
    lost): the worker answers it again; the dispatcher neither says 100 Trying nor owes a
    503 for it, and keeps the dialog it had: when the worker then dies, the caller gets
    the dispatcher's BYE for the answered call, not a 503."""

    async def scenario():
        async with dispatch() as s:
            call_id, branch, worker, invite = await invited(s)
            respond(worker, invite, 200, "OK", s.port)
            ok = await s.pbx.expect(final(call_id))
            s.pbx.invite(s.port, call_id, branch=branch)
            await wait_for_count(worker, request("INVITE", call_id), 2)
            s.pbx.in_dialog("ACK", s.port, ok, 1)
            await worker.expect(request("ACK", call_id))
            s.d.remove_worker(0)
            bye = await s.pbx.expect(request("BYE", call_id))
            s.pbx.reply(bye, 200, "OK", s.port)
            await asyncio.sleep(QUIET_S)
            return [m.status for m in s.pbx.responses(call_id, "INVITE")], bye

    statuses, bye = asyncio.run(scenario())
    assert statuses == [100, 200]
    assert bye.from_tag == "worker-1"  # the dialog kept from the answer


async def wait_for_count(client: SipClient, match, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(1 for m in client.received if match(m)) < count:
        assert time.monotonic() < deadline, "the message did not arrive again"
        await asyncio.sleep(0.02)


def test_a_worker_gone_before_answering_leaves_its_caller_a_503_repeated_until_acked():
    """The worker dies with an INVITE it never answered: the caller, told 100 Trying,
    gets 503 at once (the proxy in front tries another node) instead of waiting on. Over
    UDP the 503 is repeated until the caller's ACK, and again if the INVITE comes again;
    after the ACK, nothing more."""

    async def scenario():
        async with dispatch(workers=2) as s:
            call_id = uuid.uuid4().hex
            branch = s.pbx.invite(s.port, call_id)
            worker, _ = await relayed(s, request("INVITE", call_id))
            s.d.remove_worker(s.workers.index(worker))
            first = await s.pbx.expect(final(call_id))
            await asyncio.sleep(2.5)  # T1 (0.5 s), then 1 s, checked each second
            repeated = len(s.pbx.responses(call_id, "INVITE"))
            s.pbx.invite(s.port, call_id, branch=branch)
            await asyncio.sleep(0.3)
            on_invite = len(s.pbx.responses(call_id, "INVITE"))
            s.pbx.in_dialog("ACK", s.port, first, 1, branch=branch)
            await asyncio.sleep(0.3)
            acked = len(s.pbx.responses(call_id, "INVITE"))
            await asyncio.sleep(4.5)
            statuses = [m.status for m in s.pbx.responses(call_id, "INVITE")]
            return first, repeated, on_invite, acked, statuses, s.d.answers_owed

    first, repeated, on_invite, acked, statuses, owed = asyncio.run(scenario())
    assert first.status == 503 and first.to_tag
    assert repeated >= 3  # 100, 503 and at least one repeat
    assert on_invite >= repeated + 1
    assert len(statuses) == acked and set(statuses[1:]) == {503}
    assert owed == 0


def test_a_silent_worker_is_sent_the_invite_again_then_the_caller_gets_503_once_for_all():
    """The worker says nothing about the INVITE (the datagram lost, or pjsua starved of
    CPU): the caller's side, told 100 Trying, no longer repeats it, so the dispatcher does;
    at Timer B the caller gets 503 (repeated until its ACK; at once again on a repeat of
    its INVITE, never for another caller's) and the worker's late refusal is not a second
    final answer."""

    async def scenario():
        async with dispatch(timer_b_s=1.5) as s:
            call_id, branch, worker, invite = await invited(s)
            given_up = await s.pbx.expect(final(call_id))
            copies = sum(1 for m in worker.received if request("INVITE", call_id)(m))
            freed = s.d.calls_in_progress == 0
            s.pbx.invite(s.port, call_id, branch=branch, from_tag="someone-else")
            deadline = time.monotonic() + 5
            while len(failures(s.pbx, call_id)) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # the first timed repeat
            s.pbx.invite(s.port, call_id, branch=branch)
            await asyncio.sleep(0.2)  # the next timed repeat is a second away
            on_repeat = len(failures(s.pbx, call_id))
            s.pbx.in_dialog("ACK", s.port, given_up, 1, branch=branch)
            respond(worker, invite, 486, "Busy Here", s.port)
            late = not await nothing_arrives(s.pbx, lambda m: final(call_id)(m) and m.status == 486)
            after = sum(1 for m in worker.received if request("INVITE", call_id)(m))
            others = [
                m.status for m in s.pbx.responses(call_id, "INVITE") if m.from_tag == "someone-else"
            ]
            return given_up, copies, freed, on_repeat, late, after, others, list(s.expired)

    given_up, copies, freed, on_repeat, late, after, others, expired = asyncio.run(scenario())
    assert given_up.status == 503 and freed and len(expired) == 1
    assert copies >= 2  # sent again while the worker said nothing
    assert after == copies  # not after the 503 (the stranger's INVITE went nowhere either)
    assert on_repeat == 3  # the first, its timed repeat, and one for the repeated INVITE
    assert 503 not in others  # another caller's INVITE: refused as such (482), not the 503
    assert not late


def test_a_cancel_stops_the_invite_being_sent_to_the_worker_again():
    """The worker has said nothing about the INVITE when the caller cancels it: the
    dispatcher sends it no further copy (pjsua would take a copy after the CANCEL for a new
    call, answered for a caller who has gone)."""

    async def scenario():
        async with dispatch() as s:
            call_id, branch, worker, invite = await invited(s)
            await cancelled(s, invite, branch)
            await asyncio.sleep(2.5)
            return invites_at(worker, call_id)

    assert asyncio.run(scenario()) == 1


async def cancelled(s: Dispatch, invite: SipMessage, branch: str) -> None:
    """The PBX cancels the INVITE it sent on ``branch``; the worker has the CANCEL."""
    s.pbx.send(
        f"""CANCEL sip:taxbot@127.0.0.1:{s.port} SIP/2.0
        Via: SIP/2.0/UDP {s.pbx.host}:{s.pbx.port};branch={branch};rport
        From: {invite.get("from")}
        To: <sip:taxbot@127.0.0.1:{s.port}>
        Call-ID: {invite.call_id}
        CSeq: 1 CANCEL
        Max-Forwards: 70
        """,
        s.port,
    )
    await relayed(s, request("CANCEL", invite.call_id))


def invites_at(worker: SipClient, call_id: str, **only: str | None) -> int:
    """Copies of the call's INVITE the worker received (``to_tag=None``: initial only)."""
    return sum(
        1
        for m in worker.received
        if request("INVITE", call_id)(m) and ("to_tag" not in only or m.to_tag == only["to_tag"])
    )


def failures(client: SipClient, call_id: str) -> list[SipMessage]:
    return [m for m in client.responses(call_id, "INVITE") if m.status == 503]


def test_answers_to_a_forged_request_of_the_call_do_not_end_or_answer_it_for_the_worker():
    """While the worker has not answered yet, requests naming the call with a guessed To
    tag (an INVITE with the same CSeq, a BYE) are answered 481 by the worker; the call
    stays the worker's: no 503 from here, its slot kept, its own 200 goes through."""

    async def scenario():
        async with dispatch() as s:
            call_id = uuid.uuid4().hex
            s.pbx.invite(s.port, call_id)
            worker, invite = await relayed(s, request("INVITE", call_id))
            sender = f"{s.pbx.host}:{s.pbx.port}"
            for method in ("INVITE", "BYE"):
                s.pbx.send(
                    f"""{method} sip:taxbot@127.0.0.1:{s.port} SIP/2.0
                    Via: SIP/2.0/UDP {sender};branch={new_branch()};rport
                    From: {invite.get("from")}
                    To: <sip:taxbot@127.0.0.1:{s.port}>;tag=guessed
                    Call-ID: {call_id}
                    CSeq: 1 {method}
                    Max-Forwards: 70
                    """,
                    s.port,
                )
                _, forged = await relayed(
                    s,
                    lambda m, method=method: request(method, call_id)(m) and m.to_tag == "guessed",
                )
                respond(worker, forged, 481, "Call/Transaction Does Not Exist", s.port)
            await asyncio.sleep(2.5)  # its answers to those are no word on the call's INVITE
            copies = invites_at(worker, call_id, to_tag=None)
            in_progress = s.d.calls_in_progress
            respond(worker, invite, 200, "OK", s.port)
            ok = await s.pbx.expect(lambda m: final(call_id)(m) and m.status == 200)
            statuses = [m.status for m in s.pbx.responses(call_id, "INVITE")]
            return in_progress, ok, statuses, copies

    in_progress, ok, statuses, copies = asyncio.run(scenario())
    assert copies >= 2  # still sent again: the worker has said nothing about it
    assert in_progress == 1
    assert ok.to_tag == "worker-1"
    assert 503 not in statuses


def test_a_cancelled_invite_gets_the_workers_487_and_nothing_from_here():
    """CANCEL before the answer: the worker's 487 ends the call and nothing is owed any
    more; the worker going away afterwards sends the caller nothing more."""

    async def scenario():
        async with dispatch() as s:
            call_id, branch, worker, invite = await invited(s)
            await cancelled(s, invite, branch)
            respond(worker, invite, 487, "Request Terminated", s.port)
            await s.pbx.expect(final(call_id))
            s.d.remove_worker(0)
            await asyncio.sleep(1.5)
            return [m.status for m in s.pbx.responses(call_id, "INVITE")], s.d.answers_owed

    statuses, owed = asyncio.run(scenario())
    assert statuses == [100, 487]
    assert owed == 0


# -- TCP ------------------------------------------------------------------------------------------
def test_a_call_over_tcp_is_relayed_to_the_worker_over_udp_and_answered_on_the_connection():
    async def scenario():
        async with dispatch() as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            local = writer.get_extra_info("sockname")
            call_id = uuid.uuid4().hex
            sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            sdp += "m=audio 9 RTP/AVP 0\r\n"
            writer.write(
                (
                    f"INVITE sip:taxbot@127.0.0.1:{s.port};transport=tcp SIP/2.0\r\n"
                    f"Via: SIP/2.0/TCP 127.0.0.1:{local[1]};branch={new_branch()}\r\n"
                    f"From: <sip:0312345678@127.0.0.1>;tag=tcp-1\r\n"
                    f"To: <sip:taxbot@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
                    f"Contact: <sip:0312345678@127.0.0.1:{local[1]};transport=tcp>\r\n"
                    f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
                    f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
                ).encode()
            )
            await writer.drain()
            worker, invite = await relayed(s, request("INVITE", call_id))
            respond(worker, invite, 200, "OK", s.port)
            trying = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
            return invite, parse_datagram(trying), parse_datagram(head)

    invite, trying, ok = asyncio.run(scenario())
    assert trying.status == 100  # from the dispatcher, on the same connection
    own = parse_via(invite.get("via"))
    assert own.transport == "UDP" and own.param("tbc") is not None  # the connection's id
    assert ok.status == 200 and ok.call_id == invite.call_id
    assert [parse_via(v).transport for v in ok.get_all("via")] == ["TCP"]
