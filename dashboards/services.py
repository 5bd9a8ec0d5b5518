"""What the web app is given to work with: settings, database, event bus, bot, consoles.

``voicebot serve`` builds one ``Services`` and hands it to ``dashboards.app.create_app``;
tests build their own with a temporary database. Routers reach it through the
``get_services`` dependency instead of globals, so that several apps (tests) can live in
one process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from dashboards.config import OperationsSettings
from dashboards.db import Database

if TYPE_CHECKING:
    from dashboards.event_bus import EventBus
    from dashboards.metrics import MetricsSink
    from faq.store import Faq
    from voicebot.bot import Bot
    from voicebot.switchboard import Switchboard


@dataclass
class Services:
    """Everything the routers need; optional parts are None when not running."""

    settings: OperationsSettings
    db: Database
    bus: EventBus | None = None
    bot: Bot | None = None  # try-a-question, answer audio, FAQ reload
    switchboard: Switchboard | None = None
    staff_console: Any | None = None  # telephony.staff_console.StaffConsole
    telephony: Any | None = None  # telephony.config.TelephonySettings (WebRTC routes)
    webrtc: Any | None = None  # telephony.webrtc_endpoint.WebRtcEndpoint (the test phone)
    extra_routers: list[APIRouter] = field(default_factory=list)
    # Called after an FAQ version is published (the service wires it to Bot.reload_faq).
    on_faq_published: Callable[[Faq], Awaitable[None]] | None = None
    # Prometheus counters fed by call events; create_app makes one if None. Add it to
    # the event pipeline (it is an EventSink) so that /metrics sees calls.
    metrics: MetricsSink | None = None
    # The phone side takes calls (SIP listening, or no SIP configured): what /readyz reports.
    phone_ready: bool = False


def get_services(request: Request) -> Services:
    """FastAPI dependency: the ``Services`` of the app serving this request."""
    return request.app.state.services
