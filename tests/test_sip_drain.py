"""A draining node refuses new calls at the SIP level, so a proxy in front routes around it.

When ``voicebot serve`` gets SIGTERM, the switchboard stops taking calls and lets the calls
in progress finish for the grace period; the SIP endpoint is stopped only after that. Before
this was handled in the endpoint, pjsua kept answering OPTIONS 200 and new INVITEs 200
(then a BYE at once, when the switchboard refused the call), so Kamailio's probes kept the
node in rotation. Real SIP endpoint with real pjsua workers and the real ``Switchboard``:
it never reaches its bot here (no call is let in), so it is built without one.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kamailio_edge import options_answer
from sipp.sip_client import SipClient

from telephony.config import SipSettings, TelephonySettings
from telephony.sip_endpoint import SipEndpoint
from voicebot.events import EventRecorder
from voicebot.switchboard import Switchboard


def final(call_id: str):
    return lambda m: not m.is_request and m.call_id == call_id and m.status >= 200


def test_a_draining_endpoint_answers_probes_and_new_calls_503_and_undrained_200():
    pytest.importorskip("pjsua2")

    async def scenario() -> tuple[list[str | None], int, int]:
        switchboard = Switchboard(None, EventRecorder())  # type: ignore[arg-type]
        endpoint = SipEndpoint(
            TelephonySettings(sip=SipSettings(port=0, max_calls=4)), switchboard.handle
        )
        await endpoint.start()
        client = await SipClient.open()
        try:
            port = endpoint.port
            probes = [await asyncio.to_thread(options_answer, port)]  # pjsua answers
            await switchboard.drain(0)  # what SIGTERM does first: no call is in progress
            probes.append(await asyncio.to_thread(options_answer, port))
            call_id = uuid.uuid4().hex
            client.invite(port, call_id, rtp_port=40000)
            refused = await client.expect(final(call_id), timeout=10)
            switchboard.accepting = True  # taking calls again: probes answered 200 again
            probes.append(await asyncio.to_thread(options_answer, port))
            return probes, refused.status, endpoint.calls_answered
        finally:
            client.close()
            await endpoint.stop()

    probes, invite_status, answered = asyncio.run(scenario())
    assert probes == ["SIP/2.0 200 OK", "SIP/2.0 503 Service Unavailable", "SIP/2.0 200 OK"]
    assert invite_status == 503
    assert answered == 0  # no worker took the call: the caller got no 200 and BYE
