"""A real softphone (baresip) calls the bot, asks a question, asks for staff, and follows
the bot's REFER to a sipp UAS standing in for the staff phone.

baresip's microphone is a WAV file (module aufile) and what it hears is dumped to a WAV by
its sndfile filter, decoded from the bot's RTP. baresip cannot react to what the bot says,
so the caller track is laid out from the lengths of the bot's own rendered prompts:
greeting, question, the answer, then 「担当の方と直接話したいです」.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sipp.sip_harness import (
    SIPP_DIR,
    clip,
    envelope_similarity,
    find_clip,
    free_listen_port,
    shared_bot,
    sip_bot,
)

from voicebot import prompts
from voicebot.events import BotSpeechStarted, IntentDecided, TransferAnswered
from voicebot.wavfile import read_wav, write_wav

BARESIP = "/usr/bin/baresip"
QUESTION = "自動引き落としの申し込み方法を教えてください"  # many cues: heard right at beam 2 and 5
EXPECTED_FAQ = "payment.account-transfer"


@pytest.fixture(scope="module")
def bot():
    return shared_bot()


def baresip_config(directory: Path, source_wav: Path) -> int:
    """A baresip config dir: no sound card, mic = WAV, received audio dumped to WAVs."""
    port = free_listen_port()
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{port}",
                "net_interface 127.0.0.1",  # SDP and RTP on loopback too, like SIP
                "audio_player aubridge,nowhere",  # no sound card here; sndfile records
                f"audio_source aufile,{source_wav}",
                "audio_alert aubridge,nowhere",
                "audio_srate 8000",
                "audio_channels 1",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module aubridge.so",
                "module sndfile.so",
                "module account.so",
                "module_app menu.so",
                f"snd_path {directory}",
                "",
            ]
        )
    )
    # No registrar; manual answer (it calls out); it accepts REFER (call_transfer default).
    (directory / "accounts").write_text(
        "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU/8000;answermode=manual\n"
    )
    return port


async def rendered_s(bot, *texts: str) -> float:
    clips = [await bot.voice.clip(t, 8000) for t in texts]
    return sum(len(c) for c in clips) / 8000


def test_baresip_asks_then_follows_refer_to_staff(bot, tmp_path):
    """baresip dials the bot; the bot answers the question (events: the expected FAQ entry)
    and the audio baresip decoded from the bot's RTP contains the rendered answer (its
    first second correlates >= 0.9, its whole loudness envelope >= 0.9); asked for staff,
    the bot REFERs baresip to the staff URI, baresip calls the sipp UAS (which answers,
    talks 2 s and hangs up), the bot sees the transfer succeed and leaves the call."""
    answer_text = bot.understanding.faq.answer_text(EXPECTED_FAQ)

    async def scenario():
        greeting_s = await rendered_s(bot, prompts.GREETING)
        answer_s = await rendered_s(bot, answer_text, prompts.ANYTHING_ELSE)
        silence = lambda s: np.zeros(int(s * 8000), np.int16)  # noqa: E731
        track = np.concatenate(
            [
                silence(greeting_s + 2.0),
                clip(QUESTION),
                # Time to recognise and to speak the answer, also on a loaded machine (the
                # request for staff must not cut the answer it is compared with).
                silence(answer_s + 15.0),
                clip("担当の方と直接話したいです"),
                silence(60.0),
            ]
        )
        source = tmp_path / "caller.wav"
        write_wav(source, track, 8000)
        config_dir = tmp_path / "baresip"
        config_dir.mkdir()
        baresip_config(config_dir, source)

        staff_port = free_listen_port()
        staff_uri = f"sip:staff@127.0.0.1:{staff_port}"
        staff = await asyncio.create_subprocess_exec(
            "/usr/bin/sipp", "-sf", str(SIPP_DIR / "uas_staff.xml"), "-i", "127.0.0.1",
            "-p", str(staff_port), "-m", "1", "-nostdin", "-trace_msg", "-message_file",
            str(tmp_path / "staff-messages.log"), "-timeout", "240s", "-timeout_error",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with sip_bot(bot, transfer_targets=[staff_uri]) as sut:
            phone = await asyncio.create_subprocess_exec(
                BARESIP, "-f", str(config_dir), "-e", f"/dial sip:taxbot@127.0.0.1:{sut.port}",
                "-t", "240", cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                staff_out, _ = await asyncio.wait_for(staff.communicate(), 260)
                for _ in range(100):
                    if sut.results:
                        break
                    await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    phone.terminate()
                phone_out, _ = await asyncio.wait_for(phone.communicate(), 30)
        return sut, staff.returncode, staff_out.decode(), phone_out.decode()

    sut, staff_rc, staff_out, phone_out = asyncio.run(scenario())
    log = phone_out[-3000:]
    assert staff_rc == 0, staff_out[-2000:] + log
    staff_messages = (tmp_path / "staff-messages.log").read_text(errors="replace")
    # baresip itself called the staff URI (the REFER target): its INVITE is from the caller.
    invite = staff_messages[staff_messages.index("INVITE sip:staff@") :]
    assert "From: <sip:caller@127.0.0.1>" in invite.split("\n\n")[0]

    decisions = [(e.faq_id, e.action) for e in sut.events.of_type(IntentDecided)]
    assert decisions[0] == (EXPECTED_FAQ, "answer"), decisions
    assert decisions[-1][1] == "transfer", decisions
    assert len(sut.events.of_type(TransferAnswered)) == 1
    assert [r.outcome for r in sut.results] == ["transferred"]
    assert [e.kind for e in sut.events.of_type(BotSpeechStarted)][-1] == "transfer"

    dumps = sorted((tmp_path / "baresip").glob("dump-*-dec.wav"))
    assert dumps, log
    heard = read_wav(dumps[0])  # the bot's leg (the staff leg's dump comes later)
    assert heard.sample_rate == 8000
    rendered = asyncio.run(bot.voice.clip(answer_text, 8000))
    offset, score = find_clip(heard.samples, rendered)
    assert score >= 0.9, f"answer not found in what baresip heard (best {score:.2f})"
    window = heard.samples[offset : offset + len(rendered)]
    assert envelope_similarity(window, rendered) >= 0.9
