"""Shared pieces of the SIP tests: the bot, the endpoint under test, and running sipp.

The bot is a real ``Bot`` (FAQ matcher, Silero VAD, Whisper base) speaking with pyttsx3
(espeak-ng) because rendering every fixed reply with Kokoro takes ~30 minutes on two cores;
it is built once per test process. Its dialogue sees a fixed time inside the city's office
hours, so that transfers to staff are offered whatever the time the tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import functools
import logging
import random
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from telephony.config import SipSettings, TelephonySettings, TransferSettings
from telephony.sip_endpoint import SipEndpoint
from voicebot import prompts
from voicebot.bot import Bot
from voicebot.config import Settings
from voicebot.events import EventRecorder
from voicebot.switchboard import Switchboard
from voicebot.wavfile import read_wav

log = logging.getLogger(__name__)

SIPP_DIR = Path(__file__).parent
AUDIO = SIPP_DIR.parent / "data" / "audio" / "dev"
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # a Tuesday morning
SIPP = "/usr/bin/sipp"


def clip(utterance: str, voice: str = "jf_alpha") -> np.ndarray:
    """A caller utterance from the phone-channel fixtures (8 kHz)."""
    with (AUDIO / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    row = next(r for r in rows if r["utterance"] == utterance and r["voice"] == voice)
    audio = read_wav(AUDIO / row["file"])
    assert audio.sample_rate == 8000
    return audio.samples


class OfficeHoursBot(Bot):
    """The real bot, with its dialogue's clock fixed inside office hours."""

    def session(self, *args, **kwargs):
        kwargs.setdefault("now", lambda: OPEN)
        return super().session(*args, **kwargs)


@functools.cache
def shared_bot() -> Bot:
    settings = Settings()
    settings.tts.engine = "pyttsx3"
    settings.tts.cache_dir = Path(tempfile.mkdtemp(prefix="sip-speech-cache-"))
    bot = OfficeHoursBot(settings)
    asyncio.run(bot.prepare(rates=(8000,)))
    return bot


@functools.cache
def kokoro_bot(*answer_ids: str) -> Bot:
    """The same bot (shared recogniser and FAQ) speaking with Kokoro, for tests where
    Whisper must understand what the bot said: espeak-ng's Japanese is unintelligible to it.
    Only the texts of a short call are rendered (Kokoro runs at about real time)."""
    base = shared_bot()
    settings = base.settings.model_copy(deep=True)
    settings.tts.engine = "kokoro"
    settings.tts.voice = "jf_alpha"
    settings.tts.cache_dir = Path(tempfile.mkdtemp(prefix="sip-kokoro-cache-"))
    bot = OfficeHoursBot(settings, understanding=base.understanding, recognizer=base.recognizer)
    faq = base.understanding.faq
    texts = [prompts.GREETING, prompts.ANYTHING_ELSE, prompts.GOODBYE]
    texts += [faq.answer_text(a) for a in answer_ids]

    async def render() -> None:
        await bot.speech_cache.prerender(texts)
        await bot.voice.warm(texts, 8000)

    asyncio.run(render())
    return bot


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_listen_port(host: str = "127.0.0.1") -> int:
    """A port free on both UDP and TCP, outside the kernel's ephemeral range.

    For a peer that binds its SIP port itself a moment later (baresip listens on UDP and
    TCP): a port from ``free_port`` is ephemeral, so any outgoing socket in between may be
    given it. This picks from 21000-30999, below the ephemeral range and above the bot's
    RTP range (10000-19999), and checks both transports."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(21000, 31000)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free UDP+TCP port in 21000-30999")


@dataclass
class BotUnderTest:
    endpoint: SipEndpoint
    switchboard: Switchboard
    events: EventRecorder
    results: list

    @property
    def port(self) -> int:
        return self.endpoint.port


@contextlib.asynccontextmanager
async def sip_bot(
    bot: Bot,
    transfer_targets: list[str] | None = None,
    refer_timeout_s: float = 10.0,
    max_calls: int = 4,
    staff_console=None,
):
    """The SIP endpoint on a free port, calls going to a real Switchboard."""
    events = EventRecorder()
    switchboard = Switchboard(bot, events)
    results: list = []

    async def on_call(transport, caller, call_id):
        result = await switchboard.handle(transport, caller, call_id)
        results.append(result)
        return result

    settings = TelephonySettings(
        sip=SipSettings(port=0, allowed_peers=["127.0.0.1"], max_calls=max_calls),
        transfer=TransferSettings(
            targets=transfer_targets or ["console"], refer_timeout_s=refer_timeout_s
        ),
    )
    endpoint = SipEndpoint(settings, on_call, staff_console=staff_console)
    await endpoint.start()
    try:
        yield BotUnderTest(endpoint, switchboard, events, results)
    finally:
        await switchboard.drain(grace_s=5.0)
        await endpoint.stop()


@dataclass
class SippRun:
    returncode: int
    messages: str  # every SIP message sent and received (-trace_msg)
    errors: str  # sipp's error log (-trace_err)
    stdout: str


async def run_sipp(
    scenario: str,
    bot_port: int,
    tmp: Path,
    *,
    keys: dict[str, str] | None = None,
    calls: int = 1,
    limit: int | None = None,
    local_ip: str = "127.0.0.1",
    extra: list[str] | None = None,
    timeout_s: float = 240.0,
) -> SippRun:
    """Run a sipp UAC scenario from tests/sipp against the bot; waits for it to finish."""
    name = Path(scenario).stem
    messages = tmp / f"{name}-{free_port()}-messages.log"
    errors = tmp / f"{name}-errors.log"
    args = [
        f"127.0.0.1:{bot_port}",
        "-sf",
        str(SIPP_DIR / scenario),
        "-s",
        "taxbot",
        "-i",
        local_ip,
        "-p",
        str(free_port(host=local_ip)),
        "-m",
        str(calls),
        "-l",
        str(limit or calls),
        "-r",
        str(max(1, calls)),
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(messages),
        "-trace_err",
        "-error_file",
        str(errors),
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-max_recv_loops",
        "1000",
    ]
    for key, value in (keys or {}).items():
        args += ["-key", key, value]
    args += extra or []
    proc = await asyncio.create_subprocess_exec(
        SIPP,
        *args,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 30)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    except asyncio.CancelledError:  # the test is done with this caller: no sipp outlives it
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return SippRun(
        proc.returncode,
        messages.read_text(errors="replace") if messages.exists() else "",
        errors.read_text(errors="replace") if errors.exists() else "",
        out.decode(errors="replace"),
    )


def speech_segments(audio: np.ndarray, min_gap_s: float = 0.6) -> list[tuple[int, int]]:
    """(start, end) sample ranges where the bot spoke, split at silences >= min_gap_s."""
    frame = 160
    n = len(audio) // frame
    loud = np.abs(audio[: n * frame].reshape(n, frame)).max(axis=1) > 300
    segments: list[list[int]] = []
    gap_frames = int(min_gap_s / 0.02)
    for i in np.flatnonzero(loud):
        if segments and i - segments[-1][1] <= gap_frames:
            segments[-1][1] = i + 1
        else:
            segments.append([i, i + 1])
    return [(a * frame, b * frame) for a, b in segments]


def find_clip(
    received: np.ndarray, expected: np.ndarray, probe_s: float = 1.0
) -> tuple[int, float]:
    """Where the first ``probe_s`` of ``expected`` best matches in ``received``, and how well.

    Returns (offset, normalised correlation); μ-law there and back keeps it close to 1.
    """
    probe = expected[: int(probe_s * 8000)].astype(np.float64)
    signal = received.astype(np.float64)
    if len(signal) < len(probe) or not probe.any():
        return 0, 0.0
    n = 1 << int(np.ceil(np.log2(len(signal) + len(probe))))
    corr = np.fft.irfft(np.fft.rfft(signal, n) * np.conj(np.fft.rfft(probe, n)), n)
    corr = corr[: len(signal) - len(probe) + 1]
    energy = np.sqrt(
        np.convolve(signal**2, np.ones(len(probe)), mode="valid") * float(probe @ probe)
    )
    score = np.divide(corr, energy, out=np.zeros_like(corr), where=energy > 0)
    best = int(np.argmax(score))
    return best, float(score[best])


def envelope_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the 20 ms loudness envelopes of two equally long signals."""
    n = min(len(a), len(b)) // 160
    if n < 2:
        return 0.0
    ea = np.sqrt((a[: n * 160].astype(np.float64).reshape(n, 160) ** 2).mean(axis=1))
    eb = np.sqrt((b[: n * 160].astype(np.float64).reshape(n, 160) ** 2).mean(axis=1))
    return float(np.corrcoef(ea, eb)[0, 1])
