"""The SIP endpoint's worker processes and dispatcher, with real sipp calls on loopback.

No bot here: each call is answered by an echo handler, so these tests are about the SIP
plumbing only — the 503 when every call slot is taken, a slot freed when its call ends,
a crashed worker replaced, workers that exit cleanly on stop and on their own when the
bot's process is killed (no leaked children, no pjsua abort).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sipp.rtp_peer import RtpPeer
from sipp.sip_client import SipClient
from sipp.sip_harness import AUDIO, free_port, run_sipp

from telephony.config import SipSettings, TelephonySettings
from telephony.sip_endpoint import SipEndpoint
from telephony.sip_limits import SipLimits
from voicebot.frames import AudioFrame

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def echo_endpoint(max_calls: int, limits: SipLimits | None = None):
    """A SIP endpoint whose calls echo the caller; yields it and a queue of its calls,
    each put there once the caller's first RTP frame has reached the bot (the call is
    up: the caller's RTP peer only starts sending when the bot's RTP reaches it)."""
    answered: asyncio.Queue = asyncio.Queue()

    async def echo(transport, caller, call_id):
        heard = False
        while (frame := await transport.receive()) is not None:
            if isinstance(frame, AudioFrame):
                if not heard:
                    heard = True
                    answered.put_nowait(transport)
                await transport.send(frame)

    settings = TelephonySettings(sip=SipSettings(port=0, max_calls=max_calls))
    endpoint = SipEndpoint(settings, echo, limits=limits)
    await endpoint.start()
    try:
        yield endpoint, answered
    finally:
        await endpoint.stop()


async def call_until_bot_hangs_up(port: int, tmp: Path, extra: list[str] | None = None):
    """A sipp call (media: an RTP peer) that stays up until the bot sends BYE."""
    peer = await RtpPeer.open()
    try:
        return await run_sipp(
            "uac_answer.xml", port, tmp, keys={"rtp_port": str(peer.port)}, extra=extra
        )
    finally:
        peer.close()


async def call_and_hang_up_after(port: int, tmp: Path, seconds: float):
    """A sipp call (media: an RTP peer) whose caller hangs up after ``seconds``."""
    peer = await RtpPeer.open()
    try:
        return await run_sipp(
            "uac_hangup.xml",
            port,
            tmp,
            keys={"rtp_port": str(peer.port)},
            extra=["-d", str(int(seconds * 1000))],
            timeout_s=seconds + 60,
        )
    finally:
        peer.close()


def test_full_endpoint_answers_503_and_takes_calls_again_when_one_ends(tmp_path):
    """max_calls = 1: while one call is up, a second INVITE gets 503 Service Unavailable
    from the dispatcher (sipp's load scenario accepts it and ACKs); once the first call
    has ended, a new call is answered. Afterwards every worker has exited with status 0
    (pjsua shut down in order, no abort)."""
    shutil.copy(AUDIO / "jf_alpha" / "051.wav", tmp_path / "question.wav")  # for uac_load.xml

    async def scenario():
        async with echo_endpoint(max_calls=1) as (endpoint, answered):
            first = asyncio.create_task(call_until_bot_hangs_up(endpoint.port, tmp_path))
            call = await asyncio.wait_for(answered.get(), 60)
            refused = await run_sipp(
                "uac_load.xml", endpoint.port, tmp_path, extra=["-mp", str(free_port())]
            )
            await call.hangup()
            await asyncio.wait_for(call.wait_closed(), 30)
            first_run = await first
            third = asyncio.create_task(call_until_bot_hangs_up(endpoint.port, tmp_path))
            call = await asyncio.wait_for(answered.get(), 60)
            await call.hangup()
            third_run = await third
        return endpoint, refused, first_run, third_run

    endpoint, refused, first_run, third_run = asyncio.run(scenario())
    assert refused.returncode == 0, refused.stdout + refused.errors
    assert "SIP/2.0 503 Service Unavailable" in refused.messages
    assert first_run.returncode == 0, first_run.stdout + first_run.errors
    assert third_run.returncode == 0, third_run.stdout + third_run.errors
    assert endpoint.calls_answered == 2 and endpoint.calls_rejected == 1
    assert [w.process.returncode for w in endpoint.workers] == [0]


def final(call_id: str):
    return lambda m: (
        not m.is_request and m.call_id == call_id and m.method == "INVITE" and m.status >= 200
    )


async def until(condition, timeout: float) -> bool:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def test_a_call_given_up_by_the_dispatcher_keeps_its_slot_until_pjsua_has_let_it_go():
    """One worker full (four calls, pjsua's limit): three callers ACK, the fourth does
    not. After Timer H the dispatcher gives the fourth call up and the worker hangs it up,
    but pjsua holds it, its BYE waiting for the ACK; a caller arriving meanwhile is
    answered 503 by the dispatcher (it used to be sent to the worker and get 486 Busy Here
    from pjsua). The ACK comes late, pjsua sends its BYE, the caller answers it; only once
    the worker has reported the call gone is its slot free, and the next caller is
    answered by pjsua."""

    async def scenario():
        limits = SipLimits(timer_h_s=1.0)
        async with echo_endpoint(max_calls=4, limits=limits) as (endpoint, _answered):
            pbx = await SipClient.open()
            try:
                for _ in range(3):
                    call_id = uuid.uuid4().hex
                    pbx.invite(endpoint.port, call_id)
                    ok = await pbx.expect(final(call_id), timeout=30)
                    pbx.in_dialog("ACK", endpoint.port, ok, 1)
                silent = uuid.uuid4().hex
                pbx.invite(endpoint.port, silent)
                silent_ok = await pbx.expect(final(silent), timeout=30)
                dispatcher = endpoint.dispatcher
                given_up = await until(
                    lambda: (
                        dispatcher.routes_kept
                        and not any(silent in w.calls for w in dispatcher._workers.values())
                    ),
                    10,
                )
                meanwhile = uuid.uuid4().hex
                pbx.invite(endpoint.port, meanwhile)
                refused = await pbx.expect(final(meanwhile), timeout=30)
                held_while_pjsua_holds = dispatcher.free_slots == 0
                pbx.in_dialog("ACK", endpoint.port, silent_ok, 1)
                bye = await pbx.expect(
                    lambda m: m.is_request and m.method == "BYE" and m.call_id == silent, 30
                )
                pbx.reply(bye, 200, "OK", endpoint.port)
                released = await until(lambda: dispatcher.free_slots == 1, 30)
                later = uuid.uuid4().hex
                pbx.invite(endpoint.port, later)
                answer = await pbx.expect(final(later), timeout=30)
                return given_up, refused.status, held_while_pjsua_holds, released, answer.status
            finally:
                pbx.close()

    given_up, refused, held, released, answered = asyncio.run(scenario())
    assert given_up
    assert refused == 503
    assert held
    assert released
    assert answered == 200


def test_bot_hangs_up_a_call_that_came_over_tcp(tmp_path):
    """sipp calls over TCP (-t t1); the bot's BYE, sent by the worker over UDP to the
    dispatcher, reaches the caller over the caller's own TCP connection."""

    async def scenario():
        async with echo_endpoint(max_calls=4) as (endpoint, answered):
            sipp = asyncio.create_task(
                call_until_bot_hangs_up(endpoint.port, tmp_path, extra=["-t", "t1"])
            )
            call = await asyncio.wait_for(answered.get(), 60)
            await call.hangup()
            return await sipp

    run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    assert "TCP message received" in run.messages and "BYE sip:" in run.messages


def test_a_crashed_worker_ends_its_calls_and_is_replaced(tmp_path):
    """The worker process carrying a call is killed (SIGKILL): the call ends for the bot
    (receive() gives None, status 503), the endpoint starts a new worker in its place, and
    the next call is answered by the new worker."""

    async def scenario():
        async with echo_endpoint(max_calls=4) as (endpoint, answered):
            # This caller would hang up after 10 s; its worker dies long before.
            doomed = asyncio.create_task(call_and_hang_up_after(endpoint.port, tmp_path, 10))
            call = await asyncio.wait_for(answered.get(), 60)
            old_pid = endpoint.workers[0].pid
            os.kill(old_pid, signal.SIGKILL)
            await asyncio.wait_for(call.wait_closed(), 30)
            ended_code = call.hangup_code
            for _ in range(1200):  # the replacement starts Python and pjsua: up to a minute
                if endpoint.worker_restarts:
                    break
                await asyncio.sleep(0.05)
            new_pid = endpoint.workers[0].pid
            following = asyncio.create_task(call_until_bot_hangs_up(endpoint.port, tmp_path))
            call = await asyncio.wait_for(answered.get(), 60)
            await call.hangup()
            run = await following
            await doomed
        return endpoint, old_pid, new_pid, ended_code, run

    endpoint, old_pid, new_pid, ended_code, run = asyncio.run(scenario())
    assert ended_code == 503
    assert endpoint.worker_restarts == 1 and new_pid != old_pid
    assert run.returncode == 0, run.stdout + run.errors
    assert endpoint.calls_answered == 2
    assert [w.process.returncode for w in endpoint.workers] == [0]


def test_callers_of_a_killed_worker_get_a_bye_and_the_bot_hears_the_failure():
    """The worker carrying an established call is killed (SIGKILL): it cannot end the call,
    so the dispatcher sends the caller a BYE in its place (the caller used to be left on
    a silent line), and the bot's side of the call ends with 503 and the leg marked as
    cut off by the failure."""

    async def scenario():
        async with echo_endpoint(max_calls=4) as (endpoint, _answered):
            pbx = await SipClient.open()
            try:
                call_id = uuid.uuid4().hex
                pbx.invite(endpoint.port, call_id)
                ok = await pbx.expect(final(call_id), timeout=30)
                pbx.in_dialog("ACK", endpoint.port, ok, 1)
                assert await until(lambda: len(endpoint.transports) == 1, 10)
                transport = next(iter(endpoint.transports.values()))
                os.kill(endpoint.workers[0].pid, signal.SIGKILL)
                bye = await pbx.expect(
                    lambda m: m.is_request and m.method == "BYE" and m.call_id == call_id, 30
                )
                pbx.reply(bye, 200, "OK", endpoint.port)
                await asyncio.wait_for(transport.wait_closed(), 30)
                return ok, bye, transport.hangup_code, transport.failure
            finally:
                pbx.close()

    ok, bye, hangup_code, failure = asyncio.run(scenario())
    assert bye.from_tag == ok.to_tag and bye.to_tag == ok.from_tag
    assert hangup_code == 503
    assert failure == "SIP worker stopped"  # for the call's record: cut off, not hung up


BOT_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from telephony.config import SipSettings, TelephonySettings
    from telephony.sip_endpoint import SipEndpoint

    async def main():
        async def nothing(transport, caller, call_id):
            await transport.hangup()
        settings = TelephonySettings(sip=SipSettings(port=0, max_calls=8))
        endpoint = SipEndpoint(settings, nothing)
        await endpoint.start()
        print(json.dumps([w.pid for w in endpoint.workers]), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once process ``pid`` (not our child) has ended, False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(fd)


def test_workers_stop_when_the_bot_process_is_killed():
    """The bot's process is killed outright (SIGKILL, no clean-up): its SIP workers see the
    end of their socket and exit by themselves; no worker process is left behind."""
    bot = subprocess.Popen(
        [sys.executable, "-c", BOT_PROCESS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(bot.stdout.readline())
        assert len(pids) == 2
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        bot.kill()
        bot.wait()
        bot.stdout.close()
    assert all(wait_for_exit(pid, 30) for pid in pids), pids
