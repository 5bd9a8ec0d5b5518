"""The bot's side of a SIP worker process (telephony/sip_worker_link.py), driven directly.

Most tests start a real worker (a child process running pjsua) through ``WorkerLink``
and call it from a hand-driven SIP client on loopback (tests/sipp/sip_client.py), with a
real RTP peer as the caller's media; the worker is told that the client is its
dispatcher, so no dispatcher stands between them. The last tests put the link on one
end of a real Unix socket pair and write the worker's side of the wire protocol by hand:
a real pjsua cannot be made to send a malformed message or a message for a call it
never had, and that is what those tests are about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest
from sipp.rtp_peer import RtpPeer
from sipp.sip_client import SipClient, new_branch

from telephony.sip_wire import HEADER, PJSUA_MAX_CALLS, Kind, encode
from telephony.sip_worker_link import WorkerError, WorkerLeg, WorkerLink

FRAME_BYTES = 320  # 20 ms of 8 kHz int16


class LegRecorder:
    """What one call hears from its worker (the ``LegEvents`` the call transport would
    implement), kept in order."""

    def __init__(self) -> None:
        self.pcm: list[bytes] = []
        self.digits: list[str] = []
        self.transfers: list[tuple[int, str, bool]] = []
        self.ended: list[tuple[int, str]] = []
        self.drains = 0

    def pcm_received(self, pcm: bytes) -> None:
        self.pcm.append(pcm)

    def dtmf_received(self, digit: str) -> None:
        self.digits.append(digit)

    def transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.transfers.append((code, reason, final))

    def disconnected(self, code: int, reason: str) -> None:
        self.ended.append((code, reason))

    def drained(self) -> None:
        self.drains += 1


class Owner:
    """The callbacks a ``WorkerLink`` reports to (the SIP endpoint's, in the service)."""

    def __init__(self) -> None:
        self.incoming: list[tuple[WorkerLeg, str]] = []
        self.legs_ended: list[WorkerLeg] = []
        self.exits: list[WorkerLink] = []
        self.recorders: dict[int, LegRecorder] = {}

    def on_incoming(self, leg: WorkerLeg, caller: str) -> None:
        recorder = LegRecorder()
        leg.events = recorder
        self.recorders[leg.leg] = recorder
        self.incoming.append((leg, caller))

    def on_leg_ended(self, leg: WorkerLeg) -> None:
        self.legs_ended.append(leg)

    def on_exit(self, link: WorkerLink) -> None:
        self.exits.append(link)

    def link(self, config: dict) -> WorkerLink:
        return WorkerLink(0, config, self.on_incoming, self.on_leg_ended, self.on_exit)


def worker_config(dispatcher: str, **extra) -> dict:
    """A worker on loopback whose only allowed sender is ``dispatcher`` ("host:port").
    RTP ports: a random block high up, clear of the services other tests start."""
    first = random.randrange(30000, 39000, 2)
    return {
        "sip_host": "127.0.0.1",
        "media_host": "127.0.0.1",
        "public_host": None,
        "id_uri": "sip:taxbot@127.0.0.1",
        "dispatcher": dispatcher,
        "codecs": ["PCMU", "PCMA"],
        "pjsip_log_level": 1,
        "log_level": 30,
        "media_timeout_s": 60.0,
        "rtp_port": first,
        "rtp_ports": 64,
        **extra,
    }


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def final(call_id: str, method: str = "INVITE"):
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == method and m.status >= 200
    )


@contextlib.asynccontextmanager
async def worker_and_caller(**extra):
    """A started worker, a SIP client it takes as its dispatcher, and the owner's log."""
    client = await SipClient.open()
    owner = Owner()
    link = owner.link(worker_config(f"{client.host}:{client.port}", **extra))
    await link.start()
    try:
        yield link, client, owner
    finally:
        await link.stop()
        client.close()


def invite_with_keys(client: SipClient, port: int, call_id: str, rtp_port: int) -> None:
    """An initial INVITE offering PCMU and RFC 4733 telephone-events (payload 101, as
    the RTP peer sends them), so that the caller's keys reach the worker."""
    sender = f"{client.host}:{client.port}"
    client.send(
        f"""INVITE sip:taxbot@127.0.0.1:{port} SIP/2.0
        Via: SIP/2.0/UDP {sender};branch={new_branch()};rport
        From: "Caller" <sip:0312345678@{sender}>;tag=caller-1
        To: <sip:taxbot@127.0.0.1:{port}>
        Call-ID: {call_id}
        CSeq: 1 INVITE
        Contact: <sip:0312345678@{sender}>
        Max-Forwards: 70
        Content-Type: application/sdp

        v=0
        o=caller 1 1 IN IP4 {client.host}
        s=-
        c=IN IP4 {client.host}
        t=0 0
        m=audio {rtp_port} RTP/AVP 0 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        a=sendrecv
        """,
        port,
    )


async def answered(link: WorkerLink, client: SipClient, owner: Owner, rtp: RtpPeer):
    """INVITE, 200, ACK straight to the worker; returns (the 200, the call's leg)."""
    call_id = uuid.uuid4().hex
    invite_with_keys(client, link.address[1], call_id, rtp.port)
    ok = await client.expect(final(call_id), timeout=30)
    assert ok.status == 200, ok.start_line
    client.in_dialog("ACK", link.address[1], ok, 1)
    # This call's leg, not an earlier call's (its INCOMING may come after the 200).
    assert await wait_until(
        lambda: any(leg.sip_call_id == ok.call_id for leg, _ in owner.incoming), 10
    )
    return ok, next(leg for leg, _ in owner.incoming if leg.sip_call_id == ok.call_id)


# -- a real worker ---------------------------------------------------------------------------
def test_start_reports_the_workers_private_port_and_capacity_and_stop_ends_it() -> None:
    async def scenario():
        async with worker_and_caller() as (link, _client, owner):
            started = (link.alive, link.address, link.capacity, link.pid)
            process = link.process
            exits_while_running = list(owner.exits)
        return started, link.alive, process.returncode, exits_while_running, owner.exits, link

    started, alive_after, returncode, before, exits, link = asyncio.run(scenario())
    alive, address, capacity, pid = started
    assert alive and pid is not None
    assert address[0] == "127.0.0.1" and address[1] > 0
    assert capacity == PJSUA_MAX_CALLS
    assert not alive_after
    assert returncode == 0  # SHUTDOWN: pjsua destroyed in order, no abort
    # The owner hears of every exit of a worker that was running; the SIP endpoint tells
    # a stop it asked for from a crash by its own state.
    assert before == [] and exits == [link]


def test_capacity_follows_max_calls_up_to_what_pjsua_takes() -> None:
    async def capacity(max_calls: int) -> int:
        async with worker_and_caller(max_calls=max_calls) as (link, _client, _owner):
            return link.capacity

    assert asyncio.run(capacity(2)) == 2
    assert asyncio.run(capacity(9)) == PJSUA_MAX_CALLS


def test_a_worker_that_cannot_start_raises_worker_error_and_is_reaped() -> None:
    """No codec of the configured list exists: pjsua cannot take calls, the worker says so
    in its READY and exits; start() raises with the reason and leaves no process."""

    async def scenario():
        owner = Owner()
        link = owner.link(worker_config("127.0.0.1:9", codecs=["NO-SUCH-CODEC"]))
        with pytest.raises(WorkerError) as raised:
            await link.start()
        return link, str(raised.value)

    link, message = asyncio.run(scenario())
    assert "none of the codecs" in message
    assert link.process is not None and link.process.returncode is not None
    assert not link.alive


def test_a_call_reaches_its_leg_audio_and_keys_flow_and_hangup_ends_it() -> None:
    """The worker answers an INVITE and reports the call (INCOMING: the caller's URI, the
    SIP Call-ID); the caller's RTP arrives as 20 ms PCM frames and its RFC 4733 key as a
    digit on that leg; the bot's frames are played to the caller; hangup() is awaited
    until the worker has sent BYE, and the call's end reaches the leg and the owner."""
    tone = (4000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)

    async def scenario():
        async with worker_and_caller() as (link, client, owner):
            rtp = await RtpPeer.open()
            try:
                ok, leg = await answered(link, client, owner, rtp)
                caller = owner.incoming[0][1]
                recorder = owner.recorders[leg.leg]
                assert await wait_until(lambda: len(recorder.pcm) >= 10, 10)
                for i in range(0, len(tone), 160):
                    leg.play(tone[i : i + 160].tobytes())
                assert await wait_until(
                    lambda: any(np.abs(f).max() > 1000 for f in rtp.received), 10
                )
                await rtp.press("5")
                assert await wait_until(lambda: recorder.digits, 10)
                legs_before = dict(link.legs)
                await leg.hangup()
                bye = await client.expect(
                    lambda m: m.is_request and m.method == "BYE" and m.call_id == ok.call_id
                )
                client.reply(bye, 200, "OK", link.address[1])
                assert await wait_until(lambda: recorder.ended, 10)
                # ... and once pjsua has freed the call's slot, the owner hears of it
                assert await wait_until(lambda: owner.legs_ended, 10)
                assert owner.exits == []  # the worker carries on after its call
                return ok, leg, caller, recorder, legs_before, dict(link.legs), owner
            finally:
                rtp.close()

    ok, leg, caller, recorder, legs_before, legs_after, owner = asyncio.run(scenario())
    assert re.fullmatch(r'"Caller" <sip:0312345678@127\.0\.0\.1(:\d+)?>', caller), caller
    assert leg.sip_call_id == ok.call_id
    assert legs_before == {leg.leg: leg}
    assert all(len(pcm) == FRAME_BYTES for pcm in recorder.pcm)
    assert recorder.digits == ["5"]
    assert len(recorder.ended) == 1
    assert legs_after == {}
    assert owner.legs_ended == [leg]
    assert leg.failure is None  # ended by SIP, not cut off


def test_calls_in_turn_each_carry_audio_and_their_teardown_fails_no_clock_callback(
    capfd,
) -> None:
    """Five calls in turn on one worker, each ended by the caller's BYE while audio flows
    both ways (the teardown during which a worker once died in a clock-thread callback):
    every call's audio reaches its leg and the bot's tone reaches its caller (the audio
    ports pass from call to call), the worker logs no failed callback (its stderr is
    this process's), and it exits cleanly."""
    tone = (4000 * np.sin(2 * np.pi * 440 * np.arange(1600) / 8000)).astype(np.int16)

    async def one_call(link: WorkerLink, client: SipClient, owner: Owner) -> tuple[int, bool]:
        rtp = await RtpPeer.open()
        try:
            ok, leg = await answered(link, client, owner, rtp)
            recorder = owner.recorders[leg.leg]
            assert await wait_until(lambda: len(recorder.pcm) >= 5, 10)
            heard = False
            for _ in range(50):  # the tone, at the caller's pace, until the caller hears it
                for i in range(0, len(tone), 160):
                    leg.play(tone[i : i + 160].tobytes())
                    await asyncio.sleep(0.02)
                if any(np.abs(f).max() > 1000 for f in rtp.received):
                    heard = True
                    break
            for i in range(0, len(tone), 160):  # still playing when the caller hangs up
                leg.play(tone[i : i + 160].tobytes())
            client.in_dialog("BYE", link.address[1], ok, 2)
            bye_ok = await client.expect(final(ok.call_id, "BYE"), timeout=10)
            assert await wait_until(lambda: recorder.ended, 10)
            return bye_ok.status, heard
        finally:
            rtp.close()

    async def scenario():
        async with worker_and_caller() as (link, client, owner):
            results = [await one_call(link, client, owner) for _ in range(5)]
            alive = link.alive
        return results, alive, link.process.returncode

    results, alive, returncode = asyncio.run(scenario())
    stderr = capfd.readouterr().err
    assert results == [(200, True)] * 5
    assert alive and returncode == 0
    assert "SIP audio: could not" not in stderr, stderr[-3000:]


def test_a_call_taking_the_pjsua_slot_of_one_just_ended_keeps_its_events() -> None:
    """One call slot (pjsua reuses the same call id): the caller's BYE and the next
    caller's INVITE arrive back to back, so pjsua ends the first call and answers the
    second in one turn of the worker's loop, before the first call's object is dropped.
    Dropping it must not touch the second call, which stays the worker's: its audio
    reaches its leg and the bot's hangup of it is carried out and reported."""

    async def scenario():
        async with worker_and_caller(max_calls=1) as (link, client, owner):
            first_rtp, second_rtp = await RtpPeer.open(), await RtpPeer.open()
            try:
                ok, first = await answered(link, client, owner, first_rtp)
                second_id = uuid.uuid4().hex
                client.in_dialog("BYE", link.address[1], ok, 2)
                invite_with_keys(client, link.address[1], second_id, second_rtp.port)
                second_ok = await client.expect(final(second_id), timeout=30)
                client.in_dialog("ACK", link.address[1], second_ok, 1)
                assert await wait_until(lambda: len(owner.incoming) == 2, 10)
                second = owner.incoming[1][0]
                recorder = owner.recorders[second.leg]
                heard = await wait_until(lambda: len(recorder.pcm) >= 5, 10)
                bye_before_hangup = [
                    m for m in client.received if m.is_request and m.call_id == second_id
                ]
                await second.hangup()
                bye = await client.expect(
                    lambda m: m.is_request and m.method == "BYE" and m.call_id == second_id
                )
                client.reply(bye, 200, "OK", link.address[1])
                ended = await wait_until(lambda: recorder.ended, 10)
                return second_ok.status, heard, bye_before_hangup, ended, owner, first
            finally:
                first_rtp.close()
                second_rtp.close()

    status, heard, early_requests, ended, owner, first = asyncio.run(scenario())
    assert status == 200
    assert early_requests == []  # no BYE (or anything) from the worker before the bot's
    assert heard
    assert ended
    assert owner.recorders[first.leg].ended  # the first call's end was reported too


def test_drain_is_answered_once_the_queued_audio_has_played() -> None:
    async def scenario():
        async with worker_and_caller() as (link, client, owner):
            rtp = await RtpPeer.open()
            try:
                _ok, leg = await answered(link, client, owner, rtp)
                recorder = owner.recorders[leg.leg]
                for _ in range(25):  # half a second of bot audio
                    leg.play(bytes(FRAME_BYTES))
                leg.drain()
                assert await wait_until(lambda: recorder.drains, 10)
                return recorder.drains
            finally:
                rtp.close()

    assert asyncio.run(scenario()) == 1


def test_a_killed_worker_ends_its_calls_fails_commands_and_reports_its_exit() -> None:
    """The worker dies (SIGKILL) during a call: the leg hears 503, the owner is told the
    leg ended and the worker exited, and a later command fails with WorkerError rather
    than waiting."""

    async def scenario():
        async with worker_and_caller() as (link, client, owner):
            rtp = await RtpPeer.open()
            try:
                _ok, leg = await answered(link, client, owner, rtp)
                recorder = owner.recorders[leg.leg]
                os.kill(link.pid, signal.SIGKILL)
                assert await wait_until(lambda: owner.exits, 10)
                try:
                    await leg.hangup()
                    outcome = "done"
                except WorkerError as exc:
                    outcome = str(exc)
                return leg, recorder.ended, owner, link.alive, link.legs, outcome
            finally:
                rtp.close()

    leg, ended, owner, alive, legs, outcome = asyncio.run(scenario())
    assert ended == [(503, "SIP worker stopped")]
    assert leg.failure == "SIP worker stopped"  # cut off, not hung up by the caller
    assert owner.legs_ended == [leg]
    assert len(owner.exits) == 1
    assert not alive and legs == {}
    assert outcome == "the SIP worker has stopped"


# -- the wire, written by hand ---------------------------------------------------------------
@contextlib.asynccontextmanager
async def hand_written_worker():
    """A link connected to one end of a real socket pair; the test is the worker."""
    owner = Owner()
    link = owner.link({})
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    await asyncio.get_running_loop().create_unix_connection(lambda: link, sock=ours)
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    try:
        yield link, owner, reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_message(reader: asyncio.StreamReader) -> tuple[Kind, int, bytes]:
    """One message the link sent to its worker."""
    kind, leg, length = HEADER.unpack(await reader.readexactly(HEADER.size))
    return Kind(kind), leg, await reader.readexactly(length)


def test_messages_for_unknown_legs_are_ignored_and_a_bad_one_does_not_stop_the_link() -> None:
    async def scenario():
        async with hand_written_worker() as (link, owner, _reader, writer):
            writer.write(encode(Kind.PCM, 9, bytes(FRAME_BYTES)))  # no such call
            writer.write(encode(Kind.DTMF, 9, {"digit": "1"}))
            writer.write(encode(Kind.DISCONNECTED, 9, {"code": 200}))
            writer.write(encode(Kind.INCOMING, 3, {"caller": "<sip:a@b>", "sip_call_id": "c3"}))
            writer.write(encode(Kind.DTMF, 3, {}))  # malformed: no digit
            writer.write(encode(Kind.DTMF, 3, {"digit": "7"}))
            writer.write(encode(Kind.PCM, 3, bytes(FRAME_BYTES)))
            await writer.drain()
            assert await wait_until(lambda: owner.recorders.get(3) and owner.recorders[3].pcm, 5)
            return owner, list(owner.legs_ended), list(link.legs)

    owner, ended, legs = asyncio.run(scenario())
    assert [(leg.leg, leg.sip_call_id, caller) for leg, caller in owner.incoming] == [
        (3, "c3", "<sip:a@b>")
    ]
    assert owner.recorders[3].digits == ["7"]
    assert owner.recorders[3].pcm == [bytes(FRAME_BYTES)]
    assert ended == []  # the DISCONNECTED for leg 9 concerned no call
    assert legs == [3]


def test_commands_wait_for_their_result_and_an_error_result_raises() -> None:
    """REFER is sent with an id; the command returns only when RESULT with that id comes
    back, and raises WorkerError with the worker's reason when RESULT carries an error."""

    async def scenario():
        async with hand_written_worker() as (link, owner, reader, writer):
            link.address = ("127.0.0.1", 1)  # as start() would have set it
            writer.write(encode(Kind.INCOMING, 1, {"caller": "", "sip_call_id": "c1"}))
            await writer.drain()
            assert await wait_until(lambda: owner.incoming, 5)
            leg = owner.incoming[0][0]

            refer = asyncio.create_task(leg.refer("sip:staff@127.0.0.1"))
            kind, key, payload = await read_message(reader)
            args = json.loads(payload)
            pending_before_result = not refer.done()
            writer.write(encode(Kind.RESULT, key, {"id": args["id"], "error": "no route"}))
            await writer.drain()
            with pytest.raises(WorkerError, match="no route"):
                await refer

            hangup = asyncio.create_task(leg.hangup())
            kind2, _key2, payload2 = await read_message(reader)
            writer.write(encode(Kind.RESULT, 1, {"id": json.loads(payload2)["id"], "error": None}))
            await writer.drain()
            await hangup
            return kind, key, args, pending_before_result, kind2

    kind, key, args, pending, kind2 = asyncio.run(scenario())
    assert (kind, key, args["uri"]) == (Kind.REFER, 1, "sip:staff@127.0.0.1")
    assert pending
    assert kind2 is Kind.HANGUP


def test_commands_fail_at_once_when_the_worker_has_gone() -> None:
    async def scenario():
        async with hand_written_worker() as (link, owner, reader, writer):
            link.address = ("127.0.0.1", 1)
            writer.write(encode(Kind.INCOMING, 1, {"caller": "", "sip_call_id": "c1"}))
            await writer.drain()
            assert await wait_until(lambda: owner.incoming, 5)
            leg = owner.incoming[0][0]
            pending = asyncio.create_task(leg.hangup())
            await read_message(reader)  # the HANGUP arrived; the worker dies before answering
            writer.close()
            with pytest.raises(WorkerError, match="stopped"):
                await pending
            with pytest.raises(WorkerError, match="stopped"):
                await leg.refer("sip:staff@127.0.0.1")
            return owner, leg, link

    owner, leg, link = asyncio.run(scenario())
    assert owner.recorders[1].ended == [(503, "SIP worker stopped")]
    assert owner.legs_ended == [leg]
    assert owner.exits == [link]
