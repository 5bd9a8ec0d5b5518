"""A call on a call node, transferred to the staff console, answered on the web node.

Two real ``voicebot serve`` processes on one PostgreSQL database: a call node (SIP, the
bot, the console with its internal API) and a web node (the staff pages, following the
call node's console). The caller is sipp + the Python RTP peer on the call node's SIP
port; the staff member is an aiortc peer standing in for the staff page's WebRTC leg,
signalling through the web node's staff API only. Tones tell the directions apart:
caller 700 Hz, staff 1100 Hz, ringback 400 Hz.

The web node's test phone places its call on the call node (events through MQTT). A call
node killed while its transfer rings takes the call off the web node's staff page,
and is followed again once it is back.

The call node's internal console API is also attacked as a stranger would: without the
cluster secret nothing is answered (and no body is read), and bodies must declare a
bounded length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import dbfixtures
import httpx
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from mosquitto import Mosquitto
from nodes import Node, wait_until
from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import run_sipp
from test_node_roles import operator_client
from webrtc_client import BrowserLikePeer, dominant_frequency, rms, wait_for

from dashboards.db import Database
from dashboards.node_directory import live_consoles

postgres_url = dbfixtures.postgres_url

SECRET = "cluster-secret-for-the-test-0123"
ALWAYS_OPEN = """\
business_hours:
  weekdays: [mon, tue, wed, thu, fri, sat, sun]
  open: "00:00:00"
  close: "23:59:59"
"""


def tone(freq: float, seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, postgres_url):
    pytest.importorskip("pjsua2")
    work = tmp_path_factory.mktemp("console-nodes")
    city = work / "city.yaml"
    city.write_text(ALWAYS_OPEN, encoding="utf-8")
    broker = Mosquitto(work / "mqtt")  # the web node follows the call node's events
    broker.start()
    env = {"VOICEBOT_CLUSTER__SECRET": SECRET, **broker.env()}
    web = Node(work, "web-1", "web", postgres_url, env=env)
    call = Node(
        work,
        "call-1",
        "call",
        postgres_url,
        rtp_base=33000,
        env={**env, "VOICEBOT_CITY": str(city), "VOICEBOT_TRANSFER__RING_TIMEOUT_S": "60"},
    )
    db = Database(postgres_url)
    try:
        web.ready()
        call.ready()
        yield web, call, db
    finally:
        codes = {node.name: node.stop() for node in (call, web)}
        db.dispose()
        broker.stop()
        for node in (call, web):
            assert "Traceback" not in node.text(), node.text()[-4000:]
        assert codes == {"call-1": 0, "web-1": 0}, {
            node.name: (codes[node.name], node.text()[-4000:]) for node in (call, web)
        }


async def caller_asking_for_staff(call: Node, peer: RtpPeer, tmp_path) -> asyncio.Task:
    """A sipp caller on ``call`` (its audio through ``peer``) who presses 0 for staff after
    the greeting; the task ends with the call."""
    sipp = asyncio.create_task(
        run_sipp("uac_answer.xml", call.sip_port, tmp_path, keys={"rtp_port": str(peer.port)})
    )
    await peer.wait_for_bot()
    await peer.wait_for_bot_speech()
    await peer.press("0")  # staff, please
    return sipp


def test_a_call_node_transfer_rings_on_the_web_node_and_staff_there_talk_to_the_caller(
    two_nodes, tmp_path
):
    web, call, db = two_nodes
    assert live_consoles(db, SECRET) == {"call-1": call.web}
    peer_box: dict = {}

    async def scenario():
        peer = peer_box["peer"] = await RtpPeer.open()
        staff = BrowserLikePeer(freq=1100.0, control=False)
        api = operator_client(db, web.web)
        try:
            sipp = await caller_asking_for_staff(call, peer, tmp_path)

            def ringing_on_web():
                calls = api.get("/api/staff/calls").json()["calls"]
                return calls[0] if calls and calls[0]["state"] == "ringing" else None

            ringing = await asyncio.to_thread(wait_until, ringing_on_web, 60, "ringing on web")
            mark = len(peer.received)
            await wait_for(lambda: len(peer.received) - mark > 150, timeout=15)
            ringback = np.concatenate(peer.received[mark:])

            async def answer(sdp, kind):
                reply = await asyncio.to_thread(
                    api.post,
                    f"/api/staff/calls/{ringing['call_id']}/answer",
                    json={"sdp": sdp, "type": kind},
                )
                assert reply.status_code == 200, reply.text
                return reply.json()["sdp"], reply.json()["type"]

            await staff.call(answer)

            def connected_on_web():
                calls = api.get("/api/staff/calls").json()["calls"]
                return calls and calls[0]["state"] == "connected" and calls[0]

            connected = await asyncio.to_thread(wait_until, connected_on_web, 15, "connected")
            talking = asyncio.create_task(peer.say(tone(700.0, 4.0)))
            await wait_for(lambda: rms(staff.heard_audio()[-24000:]) > 500, timeout=15)
            to_staff = staff.heard_audio()[-24000:]
            mark = len(peer.received)
            await wait_for(lambda: len(peer.received) - mark > 50, timeout=15)
            to_caller = np.concatenate(peer.received[-50:])
            await talking
            hung = await asyncio.to_thread(
                api.post, f"/api/staff/calls/{ringing['call_id']}/hangup"
            )
            run = await sipp
            gone = await asyncio.to_thread(
                wait_until, lambda: api.get("/api/staff/calls").json()["calls"] == [], 15, "ended"
            )
        finally:
            peer.close()
            await staff.close()
            api.close()
        return run, ringing, connected, ringback, to_staff, to_caller, hung, gone

    run, ringing, connected, ringback, to_staff, to_caller, hung, gone = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors  # the caller got BYE
    assert ringing["node"] == "call-1"
    assert ringing["summary"]["reason"] == "caller_request"
    assert connected["answered_by"] == "admin"
    assert dominant_frequency(ringback, 8000) == pytest.approx(400, abs=30)
    assert dominant_frequency(to_staff, 48000) == pytest.approx(700, abs=25)
    assert dominant_frequency(to_caller, 8000) == pytest.approx(1100, abs=30)
    assert hung.status_code == 204 and gone
    assert "answered call" in call.text() and "from the web node" in call.text()


def test_the_web_nodes_test_phone_calls_the_bot_on_a_call_node(two_nodes):
    """テスト電話 on the web node (no bot there): the offer is relayed to the call node, the
    browser hears the bot's greeting from it directly, the page's live events come through
    MQTT, and 切る on the web node ends the call on the call node. One call per user holds
    also for two offers at once."""
    web, _call, db = two_nodes

    async def scenario():
        browsers = [BrowserLikePeer(freq=None), BrowserLikePeer(freq=None)]
        apis = [operator_client(db, web.web), operator_client(db, web.web)]
        api = apis[0]
        try:
            page = await asyncio.to_thread(api.get, "/phone", headers={"accept": "text/html"})
            assert page.status_code == 200 and 'id="call-button" disabled' not in page.text
            # The same user offers twice at once (two tabs): one call, one refusal.
            for browser in browsers:
                await browser.pc.setLocalDescription(await browser.pc.createOffer())
            replies = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        client.post,
                        "/api/phone/offer",
                        json={"sdp": b.pc.localDescription.sdp, "type": "offer"},
                    )
                    for client, b in zip(apis, browsers, strict=True)
                )
            )
            statuses = [r.status_code for r in replies]
            assert sorted(statuses) == [200, 429], [r.text for r in replies]
            reply = replies[statuses.index(200)]
            browser = browsers[statuses.index(200)]
            await browser.pc.setRemoteDescription(
                RTCSessionDescription(reply.json()["sdp"], reply.json()["type"])
            )
            call_id = reply.json()["call_id"]
            await asyncio.wait_for(browser.channel_open.wait(), 15)
            browser.send({"type": "ready"})
            await wait_for(lambda: rms(browser.heard_audio()[-24000:]) > 500, timeout=30)
            second = await asyncio.to_thread(
                api.post, "/api/phone/offer", json={"sdp": "v=0", "type": "offer"}
            )
            events = await asyncio.to_thread(read_events, api, call_id, "bot_speech_started")
            hung = await asyncio.to_thread(api.post, f"/api/phone/{call_id}/hangup")
        finally:
            for browser in browsers:
                await browser.close()
            for client in apis:
                client.close()
        return call_id, second, events, hung

    call_id, second, events, hung = asyncio.run(scenario())
    assert second.status_code == 429  # one test call per user, across nodes
    assert any(e.get("kind") == "greeting" for e in events), events
    assert hung.status_code == 204
    ended = wait_until(
        lambda: [c for c in sip_or_webrtc_calls(db) if c.id == call_id and c.outcome], 30, "ended"
    )
    assert ended[0].node == "call-1" and ended[0].outcome in ("hung_up", "hung_up_waiting")


def read_events(api: httpx.Client, call_id: str, until: str) -> list[dict]:
    """The phone page's live events of ``call_id`` on the web node, up to an ``until``."""
    seen: list[dict] = []
    with api.stream("GET", f"/api/phone/{call_id}/events", timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if seen[-1].get("event") == until:
                    break
    return seen


def sip_or_webrtc_calls(db: Database) -> list:
    from sqlalchemy import select

    from dashboards.call_records import Call

    with db.session() as session:
        return list(session.scalars(select(Call)).all())


def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is and read the answer (the server may not wait for a body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def test_the_internal_console_answers_only_the_cluster_secret(two_nodes):
    _web, call, _db = two_nodes
    url = f"{call.web}/internal/staff/calls"
    assert httpx.get(url, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * len(SECRET)}
    assert httpx.get(url, headers=wrong, timeout=10).status_code == 401
    right = {"Authorization": f"Bearer {SECRET}"}
    listed = httpx.get(url, headers=right, timeout=10)
    assert listed.status_code == 200 and listed.json() == {"node": "call-1", "calls": []}
    # A stranger announcing a huge body is refused before any of it is read.
    port = int(call.web.rsplit(":", 1)[1])
    answer = raw_request(
        port,
        b"POST /internal/staff/calls/x/answer HTTP/1.1\r\nHost: a\r\n"
        b"Content-Length: 1000000000\r\nContent-Type: application/json\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    # With the secret: a body needs a declared, bounded length.
    auth = f"Authorization: Bearer {SECRET}\r\n".encode()
    big = raw_request(
        port,
        b"POST /internal/staff/calls/x/answer HTTP/1.1\r\nHost: a\r\n" + auth
        + b"Content-Length: 1000000000\r\n\r\n",
    )  # fmt: skip
    assert big.startswith(b"HTTP/1.1 413"), big[:200]
    chunked = raw_request(
        port,
        b"POST /internal/staff/calls/x/answer HTTP/1.1\r\nHost: a\r\n" + auth
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )  # fmt: skip
    assert chunked.startswith(b"HTTP/1.1 411"), chunked[:200]
    both = raw_request(  # a small length announced, a large chunked body sent
        port,
        b"POST /internal/staff/calls/x/answer HTTP/1.1\r\nHost: a\r\n" + auth
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )  # fmt: skip
    assert both.startswith(b"HTTP/1.1 411"), both[:200]
    gone = httpx.post(
        f"{url}/nosuch/answer",
        headers=right,
        json={"sdp": "v=0", "type": "offer", "staff_user": "admin"},
        timeout=10,
    )
    assert gone.status_code == 404
    # The web node's own pages still need a login.
    assert httpx.get(f"{_web.web}/api/staff/calls", timeout=10).status_code in (401, 403)


def test_a_call_node_that_dies_while_a_call_rings_leaves_the_staff_page(two_nodes, tmp_path):
    """The call node is killed (SIGKILL) while its caller's transfer rings on the web node:
    the web node's staff page drops the call (its stream from the node broke: nobody can
    answer it any more), and once the node is back its console is followed again."""
    web, call, db = two_nodes

    async def scenario():
        peer = await RtpPeer.open()
        api = operator_client(db, web.web)
        try:
            sipp = await caller_asking_for_staff(call, peer, tmp_path)

            def listed():
                return api.get("/api/staff/calls").json()["calls"]

            ringing = await asyncio.to_thread(wait_until, listed, 60, "ringing on web")
            assert call.kill() == -9
            await asyncio.to_thread(wait_until, lambda: listed() == [], 15, "dropped on web")
            sipp.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sipp
            return ringing
        finally:
            peer.close()
            api.close()

    ringing = asyncio.run(scenario())
    assert ringing[0]["node"] == "call-1"
    call.restart()
    call.ready()
    with operator_client(db, web.web) as api:
        wait_until(
            lambda: live_consoles(db, SECRET) == {"call-1": call.web},
            30,
            "the restarted node listed",
        )
        assert api.get("/api/staff/calls").json() == {"calls": []}
    assert "node call-1 not followed" in web.text()  # the broken stream was noticed
    wait_until(lambda: web.text().count("following node call-1") >= 2, 30, "followed again")
