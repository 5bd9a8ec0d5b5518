"""Soak callers: sipp places each call, a Python RTP peer speaks and listens.

Each caller is one sipp process (bench/soak_caller.xml, one call) whose SDP names the
port of a ``ListeningPeer``: the caller waits for the greeting, asks a real recorded
question from tests/data/audio/dev (both voices, every FAQ topic, requests for a person
included), sometimes presses a key (1: yes to a confirmation; 0: staff), says goodbye,
and stays on the line until the bot ends the call (BYE, or REFER to staff, which it
follows as a phone would). Everything the bot sends is kept with its arrival time.

What a caller heard is then measured from the received audio alone (``analyse``):

* ``waits_s``: after each spoken utterance of the caller ends, the time until the bot's
  audio energy rises (a frame peak above ``LOUD``);
* ``inner_gaps_s``: silences over ``GAP_S`` between two loud frames of one bot turn;
* whether the bot spoke in its last seconds before it ended the call (ended politely).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sipp.rtp_peer import RtpPeer

from voicebot.wavfile import read_wav, write_wav_ulaw

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT / "tests" / "data" / "audio" / "dev"
SCENARIO = Path(__file__).parent / "soak_caller.xml"
SIPP = "/usr/bin/sipp"

LOUD = 500  # peak of a 20 ms frame of bot speech (the bot's silence is digital zero)
GAP_S = 1.0  # a silence longer than this, while the caller waits, is a gap
TURN_QUIET_S = 1.5  # the bot has finished its turn when quiet this long
MEDIA_LOST_S = 8.0  # no RTP at all from the bot for this long: the call is gone
POLITE_WINDOW_S = 8.0  # the bot spoke within this before ending the call


@dataclass
class Utterance:
    """Something a caller did: ``kind`` is "question", "goodbye" or "dtmf"."""

    kind: str
    text: str
    start: float  # monotonic
    end: float


@dataclass
class CallerResult:
    """One caller's call as the caller lived it."""

    index: int
    tag: str  # prefix of the SIP Call-ID (soak<index>-)
    question: str
    expected: str
    placed_at: float  # monotonic
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    answered: bool = False
    invite_status: int | None = None
    ended_at: float | None = None
    ended_by: str = "unknown"  # bot_bye, transfer, caller_timeout, media_lost, not_answered
    polite: bool = False
    utterances: list[Utterance] = field(default_factory=list)
    waits_s: list[tuple[float, float]] = field(default_factory=list)  # (utterance end, wait)
    unanswered_utterances: int = 0
    inner_gaps_s: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    sipp_returncode: int | None = None
    sipp_tail: str = ""


class ListeningPeer(RtpPeer):
    """An RTP peer that also notes when each loud frame of the bot arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.loud_at: list[float] = []
        self.last_rx: float | None = None

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        count = len(self.received)
        super().datagram_received(data, addr)
        self.last_rx = time.monotonic()
        if len(self.received) > count and np.abs(self.received[-1]).max(initial=0) > LOUD:
            self.loud_at.append(self.received_at[-1])

    async def bot_speech_after(self, t: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.loud_at and self.loud_at[-1] > t:
                return True
            await asyncio.sleep(0.05)
        return False

    async def bot_quiet(self, quiet_s: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.loud_at or time.monotonic() - self.loud_at[-1] >= quiet_s:
                return
            await asyncio.sleep(0.05)


class QuestionBank:
    """The recorded caller utterances (8 kHz, both voices) by what they ask."""

    def __init__(self, audio_dir: Path = AUDIO):
        with (audio_dir / "manifest.tsv").open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        self.questions: list[tuple[str, str, np.ndarray]] = []
        self.goodbyes: list[tuple[str, np.ndarray]] = []
        for row in rows:
            samples = read_wav(audio_dir / row["file"]).samples
            if row["expected"] == "control.goodbye":
                self.goodbyes.append((row["utterance"], samples))
            elif row["expected"] != "control.repeat":
                self.questions.append((row["utterance"], row["expected"], samples))


def trailing_silence_s(samples: np.ndarray) -> float:
    """Seconds of quiet at the end of a recording (after its last loud 20 ms frame)."""
    n = len(samples) // 160
    peaks = np.abs(samples[: n * 160].reshape(n, 160).astype(np.int32)).max(axis=1)
    loud = np.flatnonzero(peaks > LOUD)
    return 0.0 if not len(loud) else (n - 1 - int(loud[-1])) * 0.02


def scenario_file(work: Path, max_call_s: float) -> Path:
    """The caller scenario with its own hang-up time (sipp reads timeouts as numbers)."""
    path = work / "soak_caller.xml"
    path.write_text(
        SCENARIO.read_text(encoding="utf-8").replace("[max_ms]", str(int(max_call_s * 1000))),
        encoding="utf-8",
    )
    return path


class Caller:
    """Places one call and plays the caller's part in it."""

    def __init__(
        self,
        index: int,
        bot_port: int,
        work: Path,
        scenario: Path,
        bank: QuestionBank,
        rng: random.Random,
        max_call_s: float,
        keep_audio: bool = False,
    ):
        self.keep_audio = keep_audio  # what the caller heard, as a WAV in ``work``
        self.index = index
        self.bot_port = bot_port
        self.work = work
        self.scenario = scenario
        self.bank = bank
        self.rng = rng
        self.max_call_s = max_call_s
        question, expected, samples = rng.choice(bank.questions)
        self.question_audio = samples
        self.result = CallerResult(index, f"soak{index}-", question, expected, time.monotonic())

    async def run(self) -> CallerResult:
        peer = await ListeningPeer.open()
        log_file = self.work / f"caller-{self.index}-messages.log"
        proc = await asyncio.create_subprocess_exec(
            SIPP,
            f"127.0.0.1:{self.bot_port}",
            *("-sf", str(self.scenario), "-s", "taxbot", "-i", "127.0.0.1"),
            *("-m", "1", "-l", "1", "-r", "1"),  # sipp binds a free port itself: no race
            *("-key", "rtp_port", str(peer.port), "-cid_str", f"{self.result.tag}%u-%p@%s"),
            *("-nostdin", "-trace_msg", "-message_file", str(log_file)),
            *("-timeout", f"{int(self.max_call_s + 60)}s", "-max_recv_loops", "1000"),
            cwd=self.work,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        script = asyncio.create_task(self._talk(peer))
        watchdog = asyncio.create_task(self._watch_media(peer, proc))
        try:
            out, _ = await proc.communicate()
        except BaseException:  # the bench is stopping: no caller outlives it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        finally:
            script.cancel()
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await script
            media_lost = False
            with contextlib.suppress(asyncio.CancelledError):
                media_lost = await watchdog if watchdog.done() else False
            peer.close()
        r = self.result
        r.ended_at = time.monotonic()
        r.sipp_returncode = proc.returncode
        r.sipp_tail = out.decode(errors="replace")[-600:] if proc.returncode else ""
        read_sipp_log(r, log_file.read_text(errors="replace") if log_file.exists() else "")
        if media_lost:
            r.ended_by = "media_lost"
        analyse(r, peer)
        if self.keep_audio:
            write_wav_ulaw(self.work / f"caller-{self.index}-heard.wav", peer.bot_audio(), 8000)
        return r

    async def _watch_media(self, peer: ListeningPeer, proc: asyncio.subprocess.Process) -> bool:
        """True (and sipp stopped) if the bot's RTP stopped without the call ending."""
        while True:
            await asyncio.sleep(0.5)
            if peer.last_rx is not None and time.monotonic() - peer.last_rx > MEDIA_LOST_S:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return True

    async def _say(self, peer: ListeningPeer, kind: str, text: str, samples: np.ndarray) -> None:
        start = time.monotonic()
        await peer.say(samples)
        # The caller's speech ended before the recording's trailing silence did.
        end = time.monotonic() - trailing_silence_s(samples)
        self.result.utterances.append(Utterance(kind, text, start, end))

    async def _press(self, peer: ListeningPeer, key: str) -> None:
        now = time.monotonic()
        await peer.press(key)
        self.result.keys.append(key)
        self.result.utterances.append(Utterance("dtmf", key, now, now + 0.2))

    async def _bot_turn(self, peer: ListeningPeer, after: float) -> None:
        if await peer.bot_speech_after(after, timeout=20.0):
            await peer.bot_quiet(TURN_QUIET_S, timeout=90.0)

    async def _talk(self, peer: ListeningPeer) -> None:
        rng = self.rng
        await peer.wait_for_bot(timeout=60.0)
        await self._bot_turn(peer, 0.0)  # the greeting
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        await self._say(peer, "question", self.result.question, self.question_audio)
        await self._bot_turn(peer, time.monotonic())
        roll = rng.random()
        if roll < 0.25:  # yes to a confirmation (ignored after an answer)
            await self._press(peer, "1")
            await self._bot_turn(peer, time.monotonic())
        elif roll < 0.35:  # staff, please
            await self._press(peer, "0")
            await self._bot_turn(peer, time.monotonic())
        for _ in range(3):
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            text, samples = rng.choice(self.bank.goodbyes)
            await self._say(peer, "goodbye", text, samples)
            await self._bot_turn(peer, time.monotonic())
        await asyncio.sleep(self.max_call_s)  # the scenario hangs up at max_call_s


def read_sipp_log(r: CallerResult, log: str) -> None:
    """How the call went at the SIP level, from sipp's message trace."""
    received = []
    sent = []
    for block in log.split("----------------------------------------------- ")[1:]:
        lines = [ln.strip() for ln in block.splitlines()]
        body = [ln for ln in lines[1:] if ln]
        if len(body) < 2:
            continue
        first = body[1]
        cseq = next((ln for ln in body if ln.lower().startswith("cseq:")), "")
        (received if "received" in body[0] else sent).append((first, cseq))
    for first, cseq in received:
        if first.startswith("SIP/2.0") and "INVITE" in cseq:
            code = int(first.split()[1])
            if code >= 200:
                r.invite_status = code
                r.answered = code == 200
    if any(first.startswith("REFER ") for first, _ in received):
        r.ended_by = "transfer"
    elif any(first.startswith("BYE ") for first, _ in received):
        r.ended_by = "bot_bye"
    elif any(first.startswith("BYE ") for first, _ in sent):
        r.ended_by = "caller_timeout"
    elif not r.answered:
        r.ended_by = "not_answered"


def analyse(r: CallerResult, peer: ListeningPeer) -> None:
    """Waits after each utterance, gaps inside the bot's turns, a polite ending."""
    loud = np.asarray(peer.loud_at)
    end = r.ended_at or time.monotonic()
    acts = r.utterances
    for i, u in enumerate(acts):
        nxt = acts[i + 1].start if i + 1 < len(acts) else end
        turn = loud[(loud > u.end) & (loud < nxt)]
        if u.kind != "dtmf":
            if len(turn):
                r.waits_s.append((u.end, float(turn[0] - u.end)))
            else:
                r.unanswered_utterances += 1
        if len(turn) > 1:
            r.inner_gaps_s += [float(g) for g in np.diff(turn) if g > GAP_S]
    if r.ended_by in ("bot_bye", "transfer") and len(loud):
        r.polite = end - float(loud[-1]) <= POLITE_WINDOW_S + 2.0  # sipp's exit comes later
