"""/healthz, /metrics (fed by real call events) and /docs served without a CDN."""

from __future__ import annotations

from browser import make_services
from fastapi.testclient import TestClient

from dashboards.app import create_app
from voicebot.events import BotSpeechStarted, CallEnded, CallStarted, TransferRequested


def test_healthz_reports_db_bot_and_calls(tmp_path):
    services = make_services(tmp_path)
    with TestClient(create_app(services)) as client:
        body = client.get("/healthz").json()
        assert body == {
            "status": "ok",
            "db": True,
            "bot_loaded": False,
            "faq_entries": None,
            "calls_in_progress": 0,
            "accepting_calls": None,
        }
        from sqlalchemy import create_engine

        services.db.engine = create_engine("sqlite:////nonexistent/dir/x.db")
        down = client.get("/healthz")
        assert down.status_code == 503 and down.json()["db"] is False
        # Liveness does not depend on the database: a restart would not bring it back.
        assert client.get("/livez").status_code == 200


def test_readyz_is_503_until_the_bot_and_the_phone_side_take_calls(tmp_path):
    services = make_services(tmp_path)
    with TestClient(create_app(services)) as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert "bot not loaded" in not_ready.json()["reasons"]
        assert "phone side not listening" in not_ready.json()["reasons"]


def test_metrics_count_calls_outcomes_and_latency(tmp_path):
    services = make_services(tmp_path)
    with TestClient(create_app(services)) as client:
        sink = services.metrics
        sink.emit(CallStarted(call_id="a", t_ms=0, transport="sip"))
        sink.emit(CallStarted(call_id="b", t_ms=0, transport="webrtc"))
        sink.emit(
            BotSpeechStarted(call_id="a", t_ms=900, text="はい", kind="answer", latency_ms=640)
        )
        sink.emit(TransferRequested(call_id="b", t_ms=500, reason="operator"))
        sink.emit(CallEnded(call_id="a", t_ms=5000, outcome="completed", duration_ms=5000))
        text = client.get("/metrics").text
        assert "voicebot_calls_in_progress 1.0" in text
        assert 'voicebot_calls_total{outcome="completed"} 1.0' in text
        assert 'voicebot_turn_latency_seconds_bucket{le="0.7"} 1.0' in text
        assert 'voicebot_turn_latency_seconds_bucket{le="0.6"} 0.0' in text
        assert 'voicebot_transfers_total{result="requested"} 1.0' in text
        assert client.get("/healthz").json()["calls_in_progress"] == 1


def test_docs_use_local_assets_and_openapi_is_there(tmp_path):
    with TestClient(create_app(make_services(tmp_path))) as client:
        html = client.get("/docs").text
        assert "cdn" not in html.lower()
        assert "/docs/assets/swagger-ui-bundle.js" in html
        asset = client.get("/docs/assets/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert client.get("/openapi.json").json()["info"]["title"].startswith("税務ボイスボット")
        assert client.get("/redoc").status_code == 404
        csp = client.get("/healthz").headers["content-security-policy"]
        assert "default-src 'self'" in csp
