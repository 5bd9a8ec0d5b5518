"""Bounds on what the public SIP port keeps for a caller: call slots, routes, TCP connections.

Everything the dispatcher holds on behalf of someone on the network has a deadline or a
cap, so that no sequence of packets can keep a slot, a route or a connection forever:

* a call slot whose INVITE has no final response within Timer B (RFC 3261 17.1.1.2,
  64 * T1 = 32 s), or whose 2xx is never acknowledged within Timer H (32 s), is freed;
  a call still up after ``max_call_s`` is ended;
* a finished call's route lingers ``linger_s`` for stray retransmissions, then goes; at
  most ``max_routes`` routes are kept at all;
* TCP: a cap on connections in total and per source address, an idle timeout, a deadline
  for completing a message once it has started (slowloris), and a bound on the bytes
  waiting to be sent to a peer that does not read;
* a worker ends a call whose caller has sent no RTP for ``media_timeout_s`` (a caller
  that vanished without a BYE);
* optionally, one source address holds at most ``max_calls_per_source`` call slots.

The defaults follow the RFC timers; tests use shorter values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SipLimits:
    """Deadlines (seconds) and caps for the SIP dispatcher and its workers."""

    timer_b_s: float = 32.0  # INVITE relayed, no final response yet
    timer_h_s: float = 32.0  # 2xx relayed, no ACK yet
    linger_s: float = 32.0  # a finished call's route still takes retransmissions
    max_call_s: float = 4 * 3600.0  # a call longer than this is ended
    max_routes: int = 4096  # routes kept at all (calls in progress + lingering)
    tcp_max_connections: int = 64
    tcp_max_per_source: int = 8
    tcp_idle_s: float = 60.0  # nothing received and no call in progress on the connection
    tcp_message_s: float = 10.0  # connecting, or completing one message once started
    tcp_max_write_buffer: int = 256 * 1024  # bytes queued to a peer that does not read
    media_timeout_s: float = 60.0  # a worker ends a call whose caller sent no RTP this long
    # Call slots one source address may hold at once; 0: no cap. Off by default: a PBX or
    # SBC trunk is one source carrying every call, so any cap below max_calls would turn
    # its callers away. Set it when several PBXs share the bot, so one cannot take all.
    max_calls_per_source: int = 0

    @property
    def tick_s(self) -> float:
        """How often the deadlines are checked: a quarter of the shortest, at most 1 s."""
        shortest = min(self.timer_b_s, self.timer_h_s, self.linger_s, self.tcp_message_s)
        return max(0.05, min(1.0, shortest / 4))
