"""Four real calls keep their audio while the SIP port is flooded, and every call slot is
free again afterwards.

sipp places four calls to a real SIP endpoint (dispatcher and two pjsua workers, eight
slots); each caller's media is a Python RTP peer that speaks a fixture question over RTP
while an echo handler sends the caller's audio back. A separate process sends a bounded
burst (5 s) at the SIP port from loopback: garbage and oversized datagrams, INVITEs that
pjsua drops unanswered, half-open TCP connections and TCP clients that never read (see
tests/sipp/flood_calls.py and tests/sipp/sip_flood.py). Checked: no gap over 200 ms in the
bot's RTP towards any caller from a second before the burst until a second after it; the
dropped INVITEs did take the free slots and Timer B (shortened to 2 s) freed them; once
the four calls have ended all eight slots are free, no TCP connection is left, and eight
fresh calls are answered at once.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sipp.flood_calls import calls_through_flood

from telephony.sip_limits import SipLimits

LIVE_CALLS = 4
MAX_CALLS = 8
MAX_GAP_MS = 200.0
LIMITS = SipLimits(
    timer_b_s=2.0,
    timer_h_s=2.0,
    linger_s=4.0,
    tcp_idle_s=2.0,
    tcp_message_s=2.0,
    tcp_max_write_buffer=64 * 1024,
)


def test_calls_keep_their_audio_through_a_flood_and_every_slot_is_free_afterwards(tmp_path):
    result = asyncio.run(
        calls_through_flood(
            tmp_path, live_calls=LIVE_CALLS, max_calls=MAX_CALLS, flood_s=5.0, limits=LIMITS
        )
    )
    sent = result["flood"]["sent"]
    assert sent["dropped_invites"] > MAX_CALLS and sent["garbage"] > 1000, result
    assert sent["tcp_half_open"] > 8 and sent["tcp_never_read"] >= 4, result
    assert max(result["max_rtp_gap_ms"]) <= MAX_GAP_MS, result
    assert result["slots_free_right_after_flood"] < MAX_CALLS - LIVE_CALLS, result
    assert result["dropped_invite_slots_freed_by_timer_b"], result
    assert result["live_calls_sipp_ok"], result
    assert result["slots_free_after_calls"] == MAX_CALLS, result
    assert result["tcp_connections_left"] == 0, result
    assert result["fresh_calls_answered"] == MAX_CALLS, result
    assert result["fresh_calls_sipp_ok"], result
