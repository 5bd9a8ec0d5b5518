"""Final answers the SIP dispatcher owes to callers it told 100 Trying.

The dispatcher says 100 Trying for its node as soon as it hands a new INVITE to a worker
(telephony/sip_dispatcher.py says why). From then on the caller's side stops repeating
the INVITE and waits for a final answer, so the node owes it one: normally the worker's,
but if the worker dies or Timer B runs out first, a 503 from the dispatcher, so that the
proxy in front tries another node at once instead of waiting out its own timer.

Having stopped the caller's side repeating the INVITE, the dispatcher repeats it to the
worker itself (T1, doubling up to T2) until the worker says a word about it: the
datagram to a worker starved of CPU may be lost.

Over UDP that 503 is repeated as a server transaction repeats a failure (RFC 3261
17.2.1: T1, doubling up to T2) until the caller's ACK comes or Timer H runs out, and it is
sent again whenever the INVITE comes again. Over TCP it is sent once.

Bounded: an owed answer exists only while its call's route waits for the worker's answer
(at most ``max_calls``), and failing ones are kept at most ``give_up_s`` and at most
``cap`` at once, the oldest given up first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

T1_S = 0.5  # RFC 3261's round-trip estimate: the first repeat
T2_S = 4.0  # the longest interval between repeats


@dataclass
class OwedAnswer:
    """The 503 owed to one INVITE, and where it goes."""

    response: bytes
    address: tuple[str, int]  # the top Via's reply address (UDP; TCP when no connection)
    connection: int | None  # the TCP connection the INVITE came on, if any
    reliable: bool  # sent over TCP: no repeats
    branch: str  # the INVITE's branch: its repeats and the ACK's transaction
    to_tag: str  # the To tag of the 503: an ACK for it carries it
    source: str  # the host the INVITE came from
    from_tag: str | None  # the caller's tag
    cseq: int  # the INVITE's CSeq number
    sent_at: float = 0.0
    next_at: float = 0.0
    interval: float = T1_S
    relayed: bytes = b""  # the INVITE as relayed to the worker, while it has said nothing
    worker: tuple[str, int] = ("", 0)
    relay_at: float = 0.0
    relay_interval: float = T1_S


class OwedAnswers:
    """Answers owed (the worker has not answered yet) and failing (503 sent, no ACK)."""

    def __init__(self, cap: int, give_up_s: float) -> None:
        self.cap = cap
        self.give_up_s = give_up_s
        self._owed: dict[str, OwedAnswer] = {}
        self._failing: OrderedDict[str, OwedAnswer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owed) + len(self._failing)

    def owe(self, call_id: str, answer: OwedAnswer) -> None:
        """A new INVITE was told 100 Trying; its first copy's answer is the one kept."""
        self._owed.setdefault(call_id, answer)

    def relayed(self, call_id: str, data: bytes, worker: tuple[str, int], now: float) -> None:
        """The INVITE went to ``worker`` as ``data``: repeated until the worker answers."""
        answer = self._owed.get(call_id)
        if answer is not None and answer.worker == ("", 0):
            answer.relayed, answer.worker = data, worker
            answer.relay_at = now + answer.relay_interval

    def stop_relaying(self, call_id: str) -> None:
        """The worker said a word about the INVITE (its 100 or a final answer), or the
        caller cancelled it: it is not sent to the worker again."""
        answer = self._owed.get(call_id)
        if answer is not None:
            answer.relayed = b""

    def unheard_due(self, now: float) -> list[tuple[tuple[str, int], bytes]]:
        """INVITEs to relay again: the worker has not said a word about them yet."""
        again = []
        for answer in self._owed.values():
            if answer.relayed and now >= answer.relay_at:
                answer.relay_interval = min(answer.relay_interval * 2, T2_S)
                answer.relay_at = now + answer.relay_interval
                again.append((answer.worker, answer.relayed))
        return again

    def settle(self, call_id: str, branch: str | None) -> None:
        """The worker's own final answer to the INVITE (of that branch) went through."""
        answer = self._owed.get(call_id)
        if answer is not None and answer.branch == branch:
            del self._owed[call_id]

    def forget(self, call_id: str) -> None:
        """The call ended here another way; nothing is owed (a 503 already sent stays)."""
        self._owed.pop(call_id, None)

    def fail(self, call_id: str, now: float) -> OwedAnswer | None:
        """The worker will not answer: the 503 to send now, if one is owed."""
        answer = self._owed.pop(call_id, None)
        if answer is None:
            return None
        answer.relayed = b""  # the worker is not sent the INVITE again
        if not answer.reliable:
            answer.sent_at, answer.next_at = now, now + answer.interval
            self._failing[call_id] = answer
            while len(self._failing) > self.cap:
                self._failing.popitem(last=False)
        return answer

    def due(self, now: float) -> list[OwedAnswer]:
        """The failing answers to repeat now; those past ``give_up_s`` are dropped."""
        repeat = []
        for call_id, answer in list(self._failing.items()):
            if now - answer.sent_at > self.give_up_s:
                del self._failing[call_id]
            elif now >= answer.next_at:
                answer.interval = min(answer.interval * 2, T2_S)
                answer.next_at = now + answer.interval
                repeat.append(answer)
        return repeat

    def repeated_invite(
        self, call_id: str, branch: str | None, source: str, from_tag: str | None, cseq: int
    ) -> OwedAnswer | None:
        """The INVITE came again after its 503: the 503 to send again, if it is that one
        (same transaction, same caller, same sender)."""
        answer = self._failing.get(call_id)
        if answer is None:
            return None
        same = (answer.branch, answer.source, answer.from_tag, answer.cseq)
        return answer if same == (branch, source, from_tag, cseq) else None

    def sending(self) -> bool:
        """Whether a 503 sent is still waiting for its ACK."""
        return bool(self._failing)

    def acknowledged(self, call_id: str, to_tag: str | None) -> bool:
        """An ACK: True if it acknowledges a 503 sent here (it goes no further)."""
        answer = self._failing.get(call_id)
        if answer is None or to_tag != answer.to_tag:
            return False
        del self._failing[call_id]
        return True
