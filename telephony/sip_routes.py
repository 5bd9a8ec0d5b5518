"""The dispatcher's table of calls: which worker each dialog goes to, and for how long.

A call is keyed by its Call-ID and the caller's From tag. The first INVITE of a Call-ID
takes a call slot in a worker; its retransmissions (same From tag, Via branch and CSeq)
go to the same worker without taking another; a different initial INVITE with the same
Call-ID (another From tag or branch) is a loop or a forgery and is refused, so that two
callers never share one route. A slot is held only while its transaction or call is
alive (``SipLimits``): no final response within Timer B, no ACK within Timer H, or a call
longer than ``max_call_s`` frees it; an ended call's route lingers for retransmissions,
then is forgotten.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass

from telephony.sip_limits import SipLimits


class CallState(enum.Enum):
    CALLING = "calling"  # initial INVITE relayed, no final response yet (Timer B)
    ANSWERED = "answered"  # 2xx relayed, no ACK yet (Timer H)
    CONFIRMED = "confirmed"  # ACK seen: the call is up (max_call_s)
    ENDED = "ended"  # slot freed; the route lingers for retransmissions


class InviteKind(enum.Enum):
    NEW = "new"  # no call with this Call-ID: take a slot
    RETRANSMISSION = "retransmission"  # the same INVITE again: same worker, no new slot
    RETRY = "retry"  # the caller's next attempt after a failed one (higher CSeq)
    CONFLICT = "conflict"  # another INVITE with this Call-ID: refuse (482)


@dataclass
class Route:
    """One call: where its messages go and where its slot stands."""

    call_id: str
    from_tag: str | None  # the caller's tag
    branch: str  # the caller's Via branch on the initial INVITE
    invite_cseq: int
    worker: Hashable
    connection: int | None  # the TCP connection the call came in on
    state: CallState
    since: float  # monotonic time the state was entered
    started: float  # monotonic time of the initial INVITE
    refer_sent: bool = False  # the worker sent a REFER: NOTIFYs of it are expected
    expires: float | None = None  # forgotten after this, once ENDED
    source: str = ""  # the address the initial INVITE came from
    answered_here: bool = False  # the dispatcher answered the INVITE 503 for the worker

    @property
    def holds_slot(self) -> bool:
        return self.state is not CallState.ENDED


class CallRoutes:
    """Routes by Call-ID, each with its deadlines; at most ``limits.max_routes``."""

    def __init__(self, limits: SipLimits):
        self.limits = limits
        self._routes: dict[str, Route] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def get(self, call_id: str) -> Route | None:
        return self._routes.get(call_id)

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def classify(
        self, call_id: str, from_tag: str | None, branch: str, cseq: int
    ) -> tuple[InviteKind, Route | None]:
        """What an initial INVITE (no To tag) with this Call-ID is."""
        route = self._routes.get(call_id)
        if route is None:
            return InviteKind.NEW, None
        if route.from_tag != from_tag:
            return InviteKind.CONFLICT, route
        if route.branch == branch and route.invite_cseq == cseq:
            return InviteKind.RETRANSMISSION, route
        if route.state is CallState.ENDED and cseq > route.invite_cseq:
            return InviteKind.RETRY, route
        return InviteKind.CONFLICT, route

    def add(self, route: Route) -> bool:
        """Keep a new route; False if the table is full of calls holding slots."""
        self._routes.pop(route.call_id, None)
        if len(self._routes) >= self.limits.max_routes:
            ended = [r for r in self._routes.values() if not r.holds_slot]
            ended.sort(key=lambda r: r.expires or 0.0)
            for old in ended[: len(self._routes) - self.limits.max_routes + 1]:
                del self._routes[old.call_id]
            if len(self._routes) >= self.limits.max_routes:
                return False
        self._routes[route.call_id] = route
        return True

    def remove(self, route: Route) -> None:
        if self._routes.get(route.call_id) is route:
            del self._routes[route.call_id]

    @staticmethod
    def set_state(route: Route, state: CallState, now: float) -> None:
        route.state = state
        route.since = now

    def end(self, route: Route, now: float) -> bool:
        """The call is over: True if it held a slot until now."""
        held = route.holds_slot
        if held:
            self.set_state(route, CallState.ENDED, now)
        route.expires = now + self.limits.linger_s
        return held

    def overdue(self, now: float) -> list[tuple[Route, str]]:
        """Routes holding a slot past their deadline, with the reason; forgets lingering
        routes past theirs. The caller ends the overdue ones."""
        limits = self.limits
        overdue: list[tuple[Route, str]] = []
        forget: list[Route] = []
        for route in self._routes.values():
            age = now - route.since
            if route.state is CallState.CALLING and age > limits.timer_b_s:
                overdue.append((route, "no final response to the INVITE (Timer B)"))
            elif route.state is CallState.ANSWERED and age > limits.timer_h_s:
                overdue.append((route, "no ACK for the 2xx (Timer H)"))
            elif route.state is CallState.CONFIRMED and now - route.started > limits.max_call_s:
                overdue.append((route, "call longer than the longest allowed"))
            elif route.state is CallState.ENDED and (route.expires or 0.0) < now:
                forget.append(route)
        for route in forget:
            del self._routes[route.call_id]
        return overdue

    def of_worker(self, worker: Hashable) -> list[Route]:
        return [r for r in self._routes.values() if r.worker == worker]

    def connections_in_use(self) -> set[int]:
        """TCP connections that carry a call holding a slot."""
        return {
            r.connection for r in self._routes.values() if r.holds_slot and r.connection is not None
        }
