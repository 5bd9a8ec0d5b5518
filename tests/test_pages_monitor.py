"""The live monitor follows a real call: ``voicebot call --realtime`` → MQTT → bus → SSE → page.

Everything is real: a Mosquitto broker on a free port, the ``voicebot call`` command in
its own process (Whisper on a recorded caller track, pyttsx3 for the bot's voice so that
start-up takes seconds rather than Kokoro's half hour), the app's ``MqttSubscriber``
feeding its ``EventBus``, and Debian's Chromium reading the page while the call runs.
The same call is recorded into the app's database, so the reports page counts it after.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading

import pytest
from browser import chromium, login, make_services, new_page, running_app, screenshot
from conftest import DATA
from mosquitto import Mosquitto

from dashboards.config import MqttSettings
from dashboards.event_bus import EventBus
from dashboards.mqtt_publisher import MqttSubscriber
from dashboards.reports import TOKYO
from dashboards.routes.monitor import event_stream, snapshot_calls

CALLER = DATA / "audio" / "dev" / "jf_alpha" / "052.wav"  # 納付書を再発行してもらえますか
WAIT_MS = 120_000  # model loading and the speech cache on a busy 2-core machine


def test_monitor_shows_a_real_call_while_it_runs(tmp_path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        services = make_services(tmp_path)
        with running_app(tmp_path, services) as app, chromium() as browser:
            subscriber = MqttSubscriber(
                MqttSettings(host=broker.host, port=broker.port), app.services.bus
            )
            app.run(subscriber.start())
            app.run(subscriber.wait_subscribed(15))

            page = new_page(browser)
            login(page, app, "staff", "/monitor")
            page.goto(f"{app.url}/monitor")
            page.wait_for_selector("#connection-status.is-ok")
            assert page.inner_text("#active-empty") == "現在、通話中の電話はありません。"

            env = {
                **os.environ,
                **broker.env(),
                "VOICEBOT_TTS__ENGINE": "pyttsx3",
                "VOICEBOT_TTS__CACHE_DIR": str(tmp_path / "speech-cache"),
                "VOICEBOT_DATA_DIR": str(tmp_path / "cli-data"),
                "VOICEBOT_DATABASE__URL": services.db.url,  # the app's own records
            }
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "commands.cli",
                    "call",
                    str(CALLER),
                    "--realtime",
                    "--json",
                    "-q",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            output: dict[str, str] = {}
            reader = threading.Thread(
                target=lambda: output.update(zip(("out", "err"), proc.communicate(), strict=True))
            )
            reader.start()
            try:
                card = page.locator("#active-calls .call-card")
                card.wait_for(timeout=WAIT_MS)
                caller_line = card.locator(".line.caller").first
                caller_line.wait_for(timeout=WAIT_MS)
                # What the recogniser heard first (its kanji vary with the timing of a
                # real-time run, and a recognition started at a pause may differ from the one
                # the turn used: 納付賞税、運行… then …発行…); the decision is checked below.
                heard = caller_line.locator(".text").inner_text()
                assert heard.strip(), "an empty caller line"
                decided = card.locator(".line.decision[data-faq-id='payment.lost-notice']")
                decided.wait_for(timeout=WAIT_MS)
                # The entry is answered, or confirmed first when a real-time run hears the
                # clip less clearly (納付詳税); either way the monitor shows the bot's reply.
                action = decided.first.get_attribute("data-action")
                assert action in ("answer", "confirm"), action
                reply = card.locator(f".line.bot.kind-{action}").first
                reply.wait_for(timeout=WAIT_MS)
                assert "納付書" in reply.inner_text()
                # Seen while the call is still going on, not replayed afterwards.
                assert proc.poll() is None, "the call ended before the monitor showed it"
                decision = decided.first.inner_text()
                label = {"answer": "回答", "confirm": "確認"}[action]
                assert f"判定：{label}" in decision
                assert "納付書の再発行（payment.lost-notice）" in decision
                assert page.inner_text("#active-count") == "1"
                assert "ボット（あいさつ）" in card.locator(".line.bot").first.inner_text()
                screenshot(page, tmp_path, "monitor-live")

                # A viewer who opens the page mid-call gets the transcript so far.
                late = new_page(browser)
                login(late, app, "viewer", "/monitor")
                late.goto(f"{app.url}/monitor")
                late_card = late.locator("#active-calls .call-card")
                late_card.locator(f".line.bot.kind-{action}").wait_for(timeout=10_000)
                assert late_card.locator(".line.caller .text").first.inner_text() == heard
                assert proc.poll() is None, "the call ended before the late joiner was checked"

                reader.join(timeout=WAIT_MS / 1000)
                assert proc.returncode == 0, output.get("err")
                result = json.loads(output["out"])
                ended = page.locator("#recent-calls .call-card.is-ended")
                ended.wait_for(timeout=20_000)
                assert page.inner_text("#active-count") == "0"
                outcome = {"completed": "自動応答で完了", "hung_up": "お客様が終話"}[
                    result["outcome"]
                ]
                assert outcome in ended.locator(".call-outcome").inner_text()
                assert page.outside_requests == []
                screenshot(page, tmp_path, "monitor-ended")
            finally:
                if proc.poll() is None:
                    proc.kill()
                reader.join(timeout=30)
                app.run(subscriber.stop())

            # The same call, recorded by the command into the app's database, is counted.
            today = dt.datetime.now(TOKYO).date().isoformat()
            page = new_page(browser)
            login(page, app, "viewer", "/reports")
            page.goto(f"{app.url}/reports?from={today}&to={today}")
            assert page.inner_text("#kpi-calls .kpi-value") == "1件"
            hours = page.eval_on_selector_all(
                "#chart-hours g.bar", "els => els.map(e => e.dataset.value)"
            )
            assert sorted(float(v) for v in hours if float(v)) == [1.0]


@pytest.mark.asyncio
async def test_stream_sends_snapshot_then_live_events_and_stops_when_the_browser_leaves() -> None:
    """The SSE generator itself: snapshot of calls in progress, then events, no duplicates."""
    from voicebot.events import CallStarted, Recognized

    bus = EventBus()
    bus.emit(CallStarted(call_id="a", t_ms=0, wall_time=1000.0, transport="sip"))
    bus.emit(Recognized(call_id="a", t_ms=500, wall_time=1000.5, text="こんにちは", final=True))

    class Browser:
        """Stands in for Starlette's request: only ``is_disconnected`` is used."""

        gone = False

        async def is_disconnected(self) -> bool:
            return self.gone

    class Services:
        pass

    services = Services()
    services.bus = bus
    request = Browser()
    stream = event_stream(request, services)  # type: ignore[arg-type]
    assert await anext(stream) == b"retry: 3000\n\n"
    snapshot = await anext(stream)
    assert snapshot.startswith(b"event: snapshot\n")
    calls = json.loads(snapshot.decode().split("data: ", 1)[1])["calls"]
    assert [c["call_id"] for c in calls] == ["a"]
    assert [e["event"] for e in calls[0]["events"]] == ["call_started", "recognized"]
    assert calls[0]["events"][0]["wall_time"] == 1000.0

    bus.emit(Recognized(call_id="a", t_ms=900, wall_time=1000.9, text="納付書", final=True))
    live = await asyncio.wait_for(anext(stream), 5)
    assert live.startswith(b"event: call\n")
    event = json.loads(live.decode().split("data: ", 1)[1])
    assert (event["event"], event["text"], event["seq"]) == ("recognized", "納付書", 3)
    assert bus.subscriber_count == 1
    await stream.aclose()
    assert bus.subscriber_count == 0
    assert [c["call_id"] for c in snapshot_calls([{"call_id": ""}, {"call_id": "b"}])] == ["b"]
