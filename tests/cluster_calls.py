"""Callers of a scaled-out service, for tests/test_cluster.py and bench/cluster.py.

A cluster here is what deploy/README.md describes on one machine: Kamailio at the SIP edge
(tests/kamailio_edge.py) in front of several call nodes and a web node (tests/nodes.py), one
PostgreSQL database and one Mosquitto broker. Callers are the soak bench's
(bench/soak_callers.py: sipp places the call, a Python RTP peer speaks recorded questions
and keeps what the bot sent), behind the edge: their in-dialog requests follow the route
Kamailio recorded. Each caller waits for the greeting, asks one recorded question about an
FAQ topic that has an answer, listens until the bot has been quiet for a while, says
goodbye and stays on the line until the bot ends the call.

Whether a caller heard the answer to its question is judged from both sides, because
neither alone is enough: the bot fills a wait with short fillers (「はい。」, 「少々お待ち
ください。」), so bot audio after the question is not by itself an answer. The call record
says when the reply (never a filler) started (the caller's last speech plus the turn's
``latency_ms``, in call time); the caller must have received bot speech for at least
``HEARD_S`` in the seconds after that moment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "bench", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from kamailio_edge import Kamailio  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402
from nodes import Node, start_call_nodes  # noqa: E402
from soak import EventListener  # noqa: E402
from soak_callers import Caller, CallerResult, ListeningPeer, QuestionBank, scenario_file  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import selectinload  # noqa: E402

from dashboards.call_records import Call  # noqa: E402
from dashboards.db import Database  # noqa: E402
from faq.store import load_faq  # noqa: E402

# The soak listener (bench/soak.py) subscribes to voicebot/soak/calls/#: the nodes publish
# under that site.
MQTT_SITE = "soak"
QUIET_AFTER_ANSWER_S = 3.0  # fillers leave gaps of about 0.6 s; an answer ends with a pause
LONG_SPEECH_S = 2.5  # a filler (「少々お待ちください。」) is shorter; an answer is longer
PAUSE_S = 0.4  # a pause longer than this ends a stretch of speech
SHARED_CORES_GIVE_UP_MS = 30000  # see Cluster: the nodes share the machine's cores
HEARD_S = 1.0  # bot speech the caller must receive after the reply started
HEARD_WINDOW_S = 8.0
FRAME_S = 0.02
_ANSWERED_LINE = re.compile(r"SIP: call (\w+) answered \(worker \d+, Call-ID (\S+)\)")


def edge_scenario(work: Path, max_call_s: float) -> Path:
    """The soak caller's scenario, with its in-dialog requests (ACK, NOTIFY, BYE) carrying
    the route set of the 200 (``[routes]``), so that they pass Kamailio as they must."""
    path = scenario_file(work, max_call_s)
    text, count = re.subn(
        r"((?:ACK|NOTIFY|BYE) \[next_url\] SIP/2\.0\n(\s*)Via: [^\n]*\n)",
        r"\1\2[routes]\n",
        path.read_text(encoding="utf-8"),
    )
    assert count == 4, f"{path}: in-dialog requests changed ({count} found)"
    edge = work / "edge_caller.xml"
    edge.write_text(text, encoding="utf-8")
    return edge


def answer_questions(bank: QuestionBank) -> list[tuple[str, str, np.ndarray]]:
    """The recorded questions whose FAQ entry the bot answers itself (no transfer or
    redirect: those end the call another way)."""
    answers = {entry.id for entry in load_faq() if entry.action.value == "answer"}
    return [q for q in bank.questions if q[1] in answers]


class EdgeCaller(Caller):
    """A soak caller through the edge that asks one given question and says goodbye."""

    def __init__(
        self,
        index: int,
        edge_port: int,
        work: Path,
        scenario: Path,
        bank: QuestionBank,
        question: tuple[str, str, np.ndarray],
        max_call_s: float = 150.0,
    ):
        super().__init__(index, edge_port, work, scenario, bank, random.Random(index), max_call_s)
        text, expected, samples = question
        self.question_audio = samples
        self.result.question, self.result.expected = text, expected
        self.asked = asyncio.Event()  # the question has been spoken
        self.first_audio_at: float | None = None  # monotonic: the bot's first RTP frame
        self.peer: ListeningPeer | None = None

    async def _talk(self, peer: ListeningPeer) -> None:
        self.peer = peer  # what the caller received stays readable after the call
        await peer.wait_for_bot(timeout=60.0)
        self.first_audio_at = peer.received_at[0] if peer.received_at else time.monotonic()
        await self._bot_turn(peer, 0.0)  # the greeting
        await asyncio.sleep(0.5)
        await self._say(peer, "question", self.result.question, self.question_audio)
        self.asked.set()
        # Fillers are short; the answer is the first long stretch of speech. Then the
        # caller waits for the pause after it before saying goodbye.
        if await self._long_speech_after(peer, time.monotonic(), timeout=60.0):
            await peer.bot_quiet(QUIET_AFTER_ANSWER_S, timeout=120.0)
        text, samples = self.rng.choice(self.bank.goodbyes)
        await self._say(peer, "goodbye", text, samples)
        await self._bot_turn(peer, time.monotonic())
        await asyncio.sleep(self.max_call_s)  # the bot ends the call (or the scenario does)

    @staticmethod
    async def _long_speech_after(peer: ListeningPeer, t: float, timeout: float) -> bool:
        """Until the bot has spoken ``LONG_SPEECH_S`` without a pause over ``PAUSE_S``
        after ``t`` (False at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loud = [x for x in peer.loud_at if x > t]
            run_start = None
            for previous, current in zip([None, *loud], loud, strict=False):
                if previous is None or current - previous > PAUSE_S:
                    run_start = current
                if current - run_start >= LONG_SPEECH_S:
                    return True
            await asyncio.sleep(0.1)
        return False

    async def run(self) -> CallerResult:
        self.result.placed_at = time.monotonic()
        self.result.wall_offset = time.time() - time.monotonic()
        return await super().run()

    @property
    def loud_at(self) -> list[float]:
        """Monotonic arrival times of the bot's loud frames."""
        return self.peer.loud_at if self.peer is not None else []

    @property
    def setup_s(self) -> float | None:
        """From placing the call to the bot's first audio (INVITE, any failover, 200, RTP)."""
        if self.first_audio_at is None:
            return None
        return self.first_audio_at - self.result.placed_at


@dataclass
class Placed:
    """A caller and where its call landed (from the nodes' logs and the records)."""

    caller: EdgeCaller
    node: str | None = None
    record_id: str | None = None

    @property
    def result(self) -> CallerResult:
        return self.caller.result


def where_answered(nodes: Iterable[Node]) -> dict[str, tuple[str, str]]:
    """SIP Call-ID -> (node, call record id), from every run of every node's log."""
    found: dict[str, tuple[str, str]] = {}
    for node in nodes:
        for record_id, sip_call_id in _ANSWERED_LINE.findall(node.full_text()):
            found[sip_call_id] = (node.name, record_id)
    return found


def locate(placed: list[Placed], nodes: Iterable[Node]) -> None:
    """Fill in each caller's node and record id (by the Call-ID prefix sipp was given)."""
    answered = where_answered(nodes)
    for p in placed:
        for sip_call_id, (node, record_id) in answered.items():
            if sip_call_id.startswith(p.result.tag):
                p.node, p.record_id = node, record_id


def sip_records(db: Database) -> dict[str, Call]:
    """Every SIP call record with its turns, by id."""
    with db.session() as session:
        calls = session.scalars(
            select(Call).where(Call.transport == "sip").options(selectinload(Call.turns))
        ).all()
        return {c.id: c for c in calls}


def wait_ended(db: Database, ids: Iterable[str], timeout: float = 60.0) -> dict[str, Call]:
    """The records of ``ids`` once each has an outcome (or as they are at ``timeout``)."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        records = sip_records(db)
        done = all(i in records and records[i].outcome for i in wanted)
        if done or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def question_turn(call: Call):
    """The caller's question: the first decided turn the bot began to reply to.

    A caller who pauses mid-question may have the first half decided on; when they go on
    before its reply starts, that decision is undone and the whole sentence recognised again
    as a later turn, so a decided turn without a reply is passed over. The caller's closing
    words are never the question: if only they were replied to, the question was not."""
    turns = sorted((t for t in call.turns if t.decided_at is not None), key=lambda t: t.seq)
    replied = [t for t in turns if t.reply_kind is not None]
    if not replied or replied[0].action == "goodbye":
        return turns[0] if turns else None
    return replied[0]


def reply_started_wall(call: Call) -> float | None:
    """Epoch seconds at which the reply to the question started (the record's view: the
    call's start, plus the caller's last speech, plus the reply's latency after it)."""
    turn = question_turn(call)
    if turn is None or turn.reply_kind is None or None in (turn.latency_ms, turn.speech_end_ms):
        return None
    started = call.started_at if call.started_at.tzinfo else call.started_at.replace(tzinfo=dt.UTC)
    return started.timestamp() + (turn.speech_end_ms + turn.latency_ms) / 1000.0


def heard_reply(caller: EdgeCaller, call: Call) -> bool:
    """The record says the reply started, and the caller received at least ``HEARD_S`` of
    bot speech within ``HEARD_WINDOW_S`` after that moment (the caller's own clock)."""
    started = reply_started_wall(call)
    if started is None:
        return False
    start = started - caller.result.wall_offset - 0.5  # monotonic; allow for the media path
    loud = np.asarray(caller.loud_at)
    frames = int(((loud >= start) & (loud <= start + HEARD_WINDOW_S)).sum())
    return frames * FRAME_S >= HEARD_S


async def place(callers: list[EdgeCaller], spacing_s: float = 0.0) -> list[CallerResult]:
    """Run the callers at once (or ``spacing_s`` apart); every caller's result."""

    async def one(i: int, caller: EdgeCaller) -> CallerResult:
        await asyncio.sleep(i * spacing_s)
        return await caller.run()

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(callers))))


def events_complete(listener: EventListener, record_id: str) -> bool:
    """Every event of the call reached the broker's subscriber: sequence 1..N without a
    hole, the last being the call's end."""
    seqs = listener.seqs.get(record_id, set())
    ended = any(
        e.get("call_id") == record_id and e.get("event") == "call_ended"
        for e in listener.every_event
    )
    return bool(seqs) and seqs == set(range(1, max(seqs) + 1)) and ended


def p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


class ListenerThread:
    """The soak bench's MQTT subscriber on a loop of its own, so that it hears every event
    of the cluster across the tests' separate ``asyncio.run`` calls."""

    def __init__(self, port: int):
        self.listener = EventListener(port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.listener.start(), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Cluster:
    """Mosquitto, call nodes, optionally a web node, and Kamailio in front of the call
    nodes, on one PostgreSQL database; ``callers`` makes callers to the edge."""

    def __init__(
        self,
        work: Path,
        database_url: str,
        call_nodes: list[str],
        *,
        max_calls: int = 8,
        grace_s: float = 2.0,
        web_node: bool = True,
        max_call_s: float = 150.0,
    ):
        self.work = work
        self.db = Database(database_url)
        self.broker = Mosquitto(work / "mqtt")
        self.broker.start()
        self.listener: ListenerThread | None = None
        self.nodes: dict[str, Node] = {}
        self.web: Node | None = None
        self.edge: Kamailio | None = None
        try:
            self.listener = ListenerThread(self.broker.port)
            env = {
                **self.broker.env(),
                "VOICEBOT_MQTT__SITE": MQTT_SITE,
                "VOICEBOT_SIP__MAX_CALLS": str(max_calls),
                "VOICEBOT_SIP__WORKERS": str(max(1, -(-max_calls // 4))),  # four calls a pjsua
                # Three nodes' recognisers share two cores here: twelve questions at once
                # take 7 to 11 s to answer. The give-up is for a stalled component, not for
                # a machine carrying three nodes, so it is not what these tests exercise.
                "VOICEBOT_CALL__GIVE_UP_AFTER_MS": str(SHARED_CORES_GIVE_UP_MS),
            }
            if web_node:
                self.web = Node(work, "web", "web", database_url, env=env)
            nodes = start_call_nodes(work, call_nodes, database_url, env=env, grace_s=grace_s)
            self.nodes = {node.name: node for node in nodes}
            if self.web is not None:
                self.web.ready()
            self.edge = self.edge_for(list(self.nodes.values()))
        except BaseException:
            self.stop()
            raise
        self.bank = QuestionBank()
        self.questions = answer_questions(self.bank)
        random.Random(7).shuffle(self.questions)
        self.scenario = edge_scenario(work, max_call_s)
        self.max_call_s = max_call_s
        self._next = 0

    def edge_for(self, nodes: list[Node]) -> Kamailio:
        """A Kamailio (in a folder of its own) in front of ``nodes``, answering."""
        folder = self.work / f"edge-{len(list(self.work.glob('edge-*')))}"
        folder.mkdir()
        edge = Kamailio(folder, nodes)
        edge.wait_listening()
        return edge

    def callers(
        self,
        count: int,
        edge: Kamailio | None = None,
        question: tuple[str, str, np.ndarray] | None = None,
    ) -> list[EdgeCaller]:
        """``count`` new callers to ``edge`` (the cluster's own by default), each with
        ``question`` or else the next recorded question."""
        edge = edge or self.edge
        assert edge is not None
        made = []
        for _ in range(count):
            question_now = question or self.questions[self._next % len(self.questions)]
            made.append(
                EdgeCaller(
                    self._next, edge.port, self.work, self.scenario, self.bank, question_now,
                    self.max_call_s,
                )
            )  # fmt: skip
            self._next += 1
        return made

    def locate(self, callers: list[EdgeCaller]) -> list[Placed]:
        placed = [Placed(c) for c in callers]
        locate(placed, self.nodes.values())
        return placed

    def stop(self) -> dict[str, int]:
        """Stop everything; each node's exit code."""
        codes: dict[str, int] = {}
        if self.edge is not None:
            self.edge.stop()
        for node in [*self.nodes.values(), *([self.web] if self.web else [])]:
            codes[node.name] = node.stop()
        if self.listener is not None:
            self.listener.stop()
        self.broker.stop()
        self.db.dispose()
        return codes
