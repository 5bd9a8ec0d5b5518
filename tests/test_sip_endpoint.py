"""The SIP endpoint answering real SIP calls from sipp, with real RTP, on loopback.

The bot is the real one (VAD, Whisper, FAQ matcher, dialogue, Switchboard) speaking with
pyttsx3 (espeak-ng), see tests/sipp/sip_harness.py. sipp does the signalling; the caller's
media is a Python RTP peer (tests/sipp/rtp_peer.py) whose port sipp puts in its SDP, so
that the test can speak fixture questions, press keys (RFC 4733, same SSRC as the audio)
and record exactly what the bot sent over RTP.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from rapidfuzz import fuzz

sys.path.insert(0, str(Path(__file__).parent))

from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import (
    clip,
    envelope_similarity,
    find_clip,
    kokoro_bot,
    run_sipp,
    shared_bot,
    sip_bot,
)

from faq.normalize import normalize
from voicebot.events import (
    BotSpeechStarted,
    CallStarted,
    IntentDecided,
    TransferAnswered,
    TransferFailed,
)
from voicebot.resample import resample

QUESTION = "自動引き落としの申し込み方法を教えてください"  # many cues: heard right at beam 2 and 5
EXPECTED_FAQ = "payment.account-transfer"


@pytest.fixture(scope="module")
def bot():
    return shared_bot()


async def ask_and_say_goodbye(peer: RtpPeer, question: str) -> None:
    """A polite caller: waits for the greeting, asks, waits for the answer, says goodbye."""
    await peer.wait_for_bot()
    await peer.wait_for_bot_quiet(1.0, timeout=90)  # the greeting
    await peer.say(clip(question))
    await peer.wait_for_bot_quiet(1.5, timeout=120)  # the answer
    await peer.say(clip("以上です"))


def test_sipp_call_is_answered_from_the_faq_over_rtp(tmp_path):
    """sipp calls (INVITE/200/ACK), the caller asks a fixture question over RTP, the bot
    answers, the caller says 以上です, the bot says goodbye and sends BYE.

    Checked: the bot's decision (events: the expected FAQ entry, action "answer"); that
    the RTP the bot sent contains the rendered answer audio sample for sample (normalised
    correlation of its first second >= 0.9 after μ-law both ways) and as long as the
    rendering; and that Whisper, transcribing the answer cut from the received RTP, gives
    text close to the answer (fuzzy partial ratio >= 60). This call's bot speaks with
    Kokoro (only this call's texts are rendered) because Whisper cannot make out
    espeak-ng's Japanese.
    """

    bot = kokoro_bot(EXPECTED_FAQ)

    async def scenario():
        async with sip_bot(bot) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_answer.xml", sut.port, tmp_path, keys={"rtp_port": str(peer.port)}
                    )
                )
                await ask_and_say_goodbye(peer, QUESTION)
                run = await sipp
            finally:
                peer.close()
            return sut, peer, run

    sut, peer, run = asyncio.run(scenario())
    decisions = [(e.faq_id, e.action) for e in sut.events.of_type(IntentDecided)]
    heard = [e.text for e in sut.events.of_type(IntentDecided)]
    assert run.returncode == 0, (decisions, heard, run.stdout + run.errors)
    assert "BYE sip:" in run.messages  # the bot hung up

    started = sut.events.of_type(CallStarted)
    assert len(started) == 1 and started[0].transport == "sip"
    assert started[0].caller.startswith("sip:0312345678@127.0.0.1")
    assert decisions[0] == (EXPECTED_FAQ, "answer"), decisions
    assert decisions[-1][1] == "goodbye"
    assert [r.outcome for r in sut.results] == ["completed"]

    answer = next(e for e in sut.events.of_type(BotSpeechStarted) if e.kind == "answer")
    answer_text = bot.understanding.faq.answer_text(EXPECTED_FAQ)
    assert answer.text.startswith(answer_text)
    rendered = asyncio.run(bot.voice.clip(answer_text, 8000))
    received = peer.bot_audio()
    offset, score = find_clip(received, rendered)
    assert score >= 0.9, f"the answer's audio was not found in the bot's RTP (best {score:.2f})"
    window = received[offset : offset + len(rendered)]
    assert envelope_similarity(window, rendered) >= 0.9  # all of it, not just the start

    heard = bot.recognizer.transcribe_sync(resample(window, 8000, bot.recognizer.sample_rate))
    ratio = fuzz.partial_ratio(normalize(heard.text), normalize(answer_text))
    assert ratio >= 60, (heard.text, answer_text, ratio)


STAFF = "sip:staff@127.0.0.1:5999"
BUSY = "sip:busy@127.0.0.1:5998"


async def press_zero_during_greeting(peer: RtpPeer) -> None:
    await peer.wait_for_bot()
    await peer.wait_for_bot_speech()
    await asyncio.sleep(1.0)
    await peer.press("0")


def refer_targets(messages: str) -> list[str]:
    return [line.split(":", 1)[1].strip().strip("<>") for line in messages.splitlines()
            if line.lower().startswith("refer-to:")]  # fmt: skip


def test_dtmf_zero_refers_the_caller_to_staff(bot, tmp_path):
    """Key 0 (RFC 4733, in the caller's RTP stream) during the greeting: the bot says the
    transfer notice, sends REFER to the staff URI; sipp answers 202 and NOTIFY 100/200;
    the bot then hangs up its own leg (BYE). Outcome "transferred"."""

    async def scenario():
        async with sip_bot(bot, transfer_targets=[STAFF]) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp("uac_refer.xml", sut.port, tmp_path, keys={"rtp_port": str(peer.port)})
                )
                await press_zero_during_greeting(peer)
                run = await sipp
            finally:
                peer.close()
            return sut, peer, run

    sut, _peer, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    assert refer_targets(run.messages) == [STAFF]
    assert "BYE sip:" in run.messages.split("REFER sip:")[1]  # the bot left after the REFER
    assert [e.target for e in sut.events.of_type(TransferAnswered)] == [STAFF]  # who took it
    assert [r.outcome for r in sut.results] == ["transferred"]
    assert sut.results[0].handover.reason == "caller_request"
    # The caller heard the transfer notice before being handed over.
    kinds = [e.kind for e in sut.events.of_type(BotSpeechStarted)]
    assert kinds[-1] == "transfer"


def test_declined_refer_keeps_the_caller_with_the_bot(bot, tmp_path):
    """The staff side declines the REFER (603): the bot does not drop the caller; it
    apologises (TRANSFER_FAILED), goes on listening, and ends the call normally when the
    caller says goodbye."""

    async def scenario():
        async with sip_bot(bot, transfer_targets=[STAFF]) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_refer_declined.xml",
                        sut.port,
                        tmp_path,
                        keys={"rtp_port": str(peer.port)},
                    )
                )
                await press_zero_during_greeting(peer)
                await peer.wait_for_bot_quiet(1.5, timeout=120)  # notice, apology
                await peer.say(clip("以上です"))
                run = await sipp
            finally:
                peer.close()
            return sut, run

    sut, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    failed = sut.events.of_type(TransferFailed)
    assert len(failed) == 1 and "603" in failed[0].reason
    # A filler may come before the goodbye when recognition is slow (a loaded machine).
    said = [e.kind for e in sut.events.of_type(BotSpeechStarted) if e.kind != "filler"]
    assert said == ["greeting", "transfer", "transfer_failed", "goodbye"], said
    assert [r.outcome for r in sut.results] == ["completed"]


def test_refer_without_final_notify_times_out_and_keeps_the_caller(bot, tmp_path):
    """The REFER is accepted (202) but no NOTIFY follows: after refer_timeout_s (2 s here)
    the transfer counts as failed, the bot apologises and the call goes on to a normal
    goodbye."""

    async def scenario():
        async with sip_bot(bot, transfer_targets=[STAFF], refer_timeout_s=2.0) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_refer_no_notify.xml",
                        sut.port,
                        tmp_path,
                        keys={"rtp_port": str(peer.port)},
                    )
                )
                await press_zero_during_greeting(peer)
                await peer.wait_for_bot_quiet(1.5, timeout=120)
                await peer.say(clip("以上です"))
                run = await sipp
            finally:
                peer.close()
            return sut, run

    sut, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    failed = sut.events.of_type(TransferFailed)
    assert len(failed) == 1 and "no answer to REFER within 2 s" in failed[0].reason
    # A filler may come before the goodbye when recognition is slow (a loaded machine).
    said = [e.kind for e in sut.events.of_type(BotSpeechStarted) if e.kind != "filler"]
    assert said == ["greeting", "transfer", "transfer_failed", "goodbye"], said
    assert [r.outcome for r in sut.results] == ["completed"]


def test_shutdown_with_a_call_in_progress_ends_it_politely(bot, tmp_path):
    """The service stops during a call: the switchboard drains (grace 0.5 s), the bot says
    its shutdown words (in office hours it then tries to hand over; with no staff console
    here that fails and is apologised for), the endpoint hangs up what is left (BYE, sipp's
    scenario completes), and the pjsua worker process exits cleanly (status 0, no abort)."""

    async def scenario():
        async with sip_bot(bot) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_answer.xml", sut.port, tmp_path, keys={"rtp_port": str(peer.port)}
                    )
                )
                await peer.wait_for_bot()
                await peer.wait_for_bot_speech()
                await sut.switchboard.drain(grace_s=0.5)
                await sut.endpoint.stop()
                run = await sipp
            finally:
                peer.close()
            return sut, run

    sut, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    said = [e.kind for e in sut.events.of_type(BotSpeechStarted)]
    assert said[:2] == ["greeting", "shutdown"], said
    assert len(sut.results) == 1
    assert sut.endpoint.transports == {}
    assert [w.process.returncode for w in sut.endpoint.workers] == [0]  # no pjsua abort


def test_transfer_tries_the_next_target_when_one_fails(bot, tmp_path):
    """Targets ["console", BUSY, STAFF] with no staff console on this endpoint: the console
    is skipped, BUSY declines (603), STAFF accepts; the caller is transferred."""

    async def scenario():
        async with sip_bot(bot, transfer_targets=["console", BUSY, STAFF]) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_refer_second_target.xml",
                        sut.port,
                        tmp_path,
                        keys={"rtp_port": str(peer.port)},
                    )
                )
                await press_zero_during_greeting(peer)
                run = await sipp
            finally:
                peer.close()
            return sut, run

    sut, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    assert refer_targets(run.messages) == [BUSY, STAFF]
    assert not sut.events.of_type(TransferFailed)
    assert [r.outcome for r in sut.results] == ["transferred"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_caller_hanging_up_ends_the_call(bot, tmp_path, transport):
    """sipp (over UDP, and over TCP) sends BYE 4 s into the greeting: receive() returns
    None, the switchboard records the call as hung up, and the endpoint forgets it."""

    async def scenario():
        async with sip_bot(bot) as sut:
            peer = await RtpPeer.open()
            try:
                run = await run_sipp(
                    "uac_hangup.xml",
                    sut.port,
                    tmp_path,
                    keys={"rtp_port": str(peer.port)},
                    extra=["-d", "4000"] + (["-t", "t1"] if transport == "tcp" else []),
                )
                for _ in range(100):  # the call task notices the BYE just after sipp exits
                    if sut.results:
                        break
                    await asyncio.sleep(0.05)
                active = dict(sut.endpoint.transports)
            finally:
                peer.close()
            return sut, run, active

    sut, run, active = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    assert f"Via: SIP/2.0/{transport.upper()} " in run.messages
    assert [r.outcome for r in sut.results] == ["hung_up"]
    assert active == {}
    assert [e.kind for e in sut.events.of_type(BotSpeechStarted)] == ["greeting"]
