"""`voicebot serve`: one node of the service, in one process.

Composition root: the conversation core (one shared ``Bot``), the event pipeline
(masking → live bus, call records, MQTT, metrics), the SIP endpoint, WebRTC and the
web app. Nothing here does any of that work itself; it builds the parts, starts
them in order, logs where each listens, and stops them in the reverse order.

The node's role (``role`` setting, ``--role``) says which parts: ``all`` (the default)
runs everything; ``call`` runs the bot, the switchboard, SIP and WebRTC with only the
health probes over HTTP; ``web`` runs the operator web app without a bot. All nodes share
the database and the MQTT broker; nodes with a bot follow the FAQ version published last.

Shutdown (SIGINT/SIGTERM) never cuts a caller off: the switchboard stops taking
calls, lets calls in progress finish for a grace period, then tells the remaining
callers and hands them to staff (or gives the hours) before the endpoints close.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from commands import native_memory, sd_notify
from dashboards.config import OperationsSettings
from telephony.config import TelephonySettings
from voicebot.config import Settings
from voicebot.tts.cache import format_duration

log = logging.getLogger(__name__)

CALL_RATES = (8000, 16000)  # SIP (G.711) and WebRTC (Opus, resampled)


@dataclass
class ServeOptions:
    """What to start; every part is on by default (the embedded defaults)."""

    sip: bool = True
    webrtc: bool = True
    grace_s: float = 30.0
    progress: Callable[[int, int, str], None] | None = None


@dataclass
class RunningService:
    """The started parts, for tests and for an orderly stop."""

    bot: Any
    db: Any
    bus: Any
    pipeline: Any
    switchboard: Any
    staff_console: Any
    sip: Any
    app: Any
    server: Any
    web_url: str
    sip_uri: str | None
    stops: list[Callable[[], Any]] = field(default_factory=list)


class _Server:
    """uvicorn's server without its own signal handling (the service handles signals)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


async def start_service(
    core: Settings,
    telephony: TelephonySettings,
    ops: OperationsSettings,
    options: ServeOptions | None = None,
) -> RunningService:
    """Build and start the parts of this node's role; returns once all of them listen."""
    from dashboards.event_bus import EventBus
    from dashboards.services import Services

    options = options or ServeOptions()
    ops.data_dir.mkdir(parents=True, exist_ok=True)
    takes_calls = ops.role != "web"
    if not options.webrtc or not takes_calls:
        telephony.webrtc.enabled = False  # the test phone and WebRTC offers say so

    db, retention = await _open_records(ops)
    trimmer = asyncio.create_task(native_memory.trim_periodically(), name="malloc-trim")
    bot = await _start_bot(core, options) if takes_calls else None
    bus = EventBus()
    pipeline, events, metrics = await _start_events(ops, bus, db)
    switchboard = staff_console = webrtc = None
    if takes_calls:
        switchboard, staff_console, webrtc = _phone_side(bot, events, telephony, bus, ops)
    else:
        staff_console, webrtc = _remote_phone_side(db, ops, bus)

    services = Services(
        settings=ops, db=db, bus=bus, bot=bot, switchboard=switchboard, metrics=metrics,
        staff_console=staff_console, extra_routers=[], telephony=telephony, webrtc=webrtc,
    )  # fmt: skip
    app, follower = await _http_app(services, ops)
    server, web_task, web_url = await _start_web(app, ops, telephony.webrtc.enabled)

    sip = None
    if takes_calls and options.sip and telephony.sip.enabled:
        sip = await _start_sip(telephony, switchboard, staff_console)
    services.phone_ready = takes_calls
    stops = [retention.cancel, trimmer.cancel, *await _cluster_links(db, ops, web_url, webrtc)]

    return RunningService(
        bot=bot,
        db=db,
        bus=bus,
        pipeline=pipeline,
        switchboard=switchboard,
        staff_console=staff_console,
        sip=sip,
        app=app,
        server=(server, web_task),
        web_url=web_url,
        sip_uri=sip.uri if sip is not None else None,
        stops=stops + ([follower.stop] if follower else []),
    )


async def _start_bot(core: Settings, options: ServeOptions) -> Any:
    """The shared bot: models loaded, prompts ready; FAQ answers render in the background."""
    from voicebot.bot import Bot

    native_memory.limit_arenas()  # before the models start their threads
    bot = Bot(core)
    await bot.prepare(rates=CALL_RATES, progress=options.progress, background=True)
    if bot.rendering is not None:
        bot.rendering.add_done_callback(_log_rendering)
    return bot


async def _start_events(ops: OperationsSettings, bus: Any, db: Any) -> tuple[Any, Any, Any]:
    """The event pipeline (masking, live bus, records, MQTT) and the metrics, fanned out."""
    from dashboards.metrics import MetricsSink
    from dashboards.pipeline import EventPipeline
    from voicebot.events import EventFanout

    pipeline = EventPipeline(ops, bus=bus, db=db)
    await pipeline.start()
    metrics = MetricsSink()
    events = EventFanout(pipeline)
    events.add(metrics)
    return pipeline, events, metrics


def _phone_side(
    bot: Any, events: Any, telephony: TelephonySettings, bus: Any, ops: OperationsSettings
) -> tuple[Any, Any, Any]:
    """The switchboard that runs every call, the staff console and the WebRTC endpoint."""
    from telephony.staff_console import StaffConsole
    from telephony.webrtc_endpoint import WebRtcEndpoint
    from voicebot.switchboard import Switchboard

    switchboard = Switchboard(bot, events)
    staff_console = StaffConsole(telephony, bus)
    max_calls = ops.web.max_test_phone_calls
    webrtc = WebRtcEndpoint(
        telephony, switchboard, max_calls=max_calls, staff_console=staff_console
    )
    return switchboard, staff_console, webrtc


async def _http_app(services: Any, ops: OperationsSettings) -> tuple[Any, Any]:
    """This node's HTTP app and the follower that keeps its bot on the published FAQ.

    ``all``: the web app; publishing there switches its own bot at once. ``web``: the web
    app without a bot. ``call``: the health probes only. A node with a bot speaks the FAQ
    version published last from the start (after a restart too), then follows new ones.
    """
    from dashboards.faq_follower import FaqFollower
    from dashboards.faq_versions import FaqVersions

    if ops.role == "call":
        from dashboards.routes.system import create_probe_app

        app = create_probe_app(services)
        if ops.cluster.secret:  # the web node's staff and test-phone pages reach this node
            from dashboards.routes import node_console, node_phone

            app.include_router(node_console.router)
            app.include_router(node_phone.router)
            app.add_middleware(node_console.NodeTokenGuard, secret=ops.cluster.secret)
        versions = FaqVersions.for_services(services)
        await asyncio.to_thread(versions.ensure_initial_version)
    else:
        from dashboards.app import create_app

        app = await asyncio.to_thread(create_app, services)
        versions = app.state.faq_versions
    bot = services.bot
    if bot is None:
        return app, None
    follower = FaqFollower(
        versions, lambda faq: bot.reload_faq(faq, rates=CALL_RATES), ops.node, ops.role
    )
    await follower.sync()
    follower.start()
    app.state.faq_follower = follower

    async def on_faq_published(_faq: Any) -> None:
        await follower.sync()

    services.on_faq_published = on_faq_published
    return app, follower


async def _open_records(ops: OperationsSettings) -> tuple[Any, asyncio.Task]:
    """The call records, with calls cut by this node's last death closed, and retention."""
    from dashboards.call_records import close_cut_calls, mark_abandoned, set_this_node
    from dashboards.db import Database
    from dashboards.retention import retention_job

    db = Database(ops.database_url())
    await asyncio.to_thread(_create_tables, db)
    # Calls this node's previous process was taking when it died are closed as abandoned;
    # calls of any node open for over an hour (a node that never came back) as errors.
    set_this_node(ops.node)
    abandoned = await asyncio.to_thread(close_cut_calls, db, ops.node)
    stale = await asyncio.to_thread(mark_abandoned, db, dt.timedelta(hours=1))
    log.info(
        "records: %s (node %s: %d abandoned call(s) closed, %d stale)",
        _safe_url(db.url),
        ops.node,
        abandoned,
        stale,
    )
    return db, asyncio.create_task(retention_job(db, ops.retention), name="retention")


async def _start_web(
    app: Any, ops: OperationsSettings, webrtc: bool
) -> tuple[Any, asyncio.Task, str]:
    """The web server, listening; its task and URL."""
    from dashboards.web_server import server_config

    server = _Server(server_config(app, ops.web))
    web_task = asyncio.create_task(server.serve(), name="web")
    while not server.started:
        if web_task.done():
            web_task.result()  # raises the reason (e.g. port in use)
            raise RuntimeError("web server stopped during start-up")
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    web_url = f"http://{ops.web.host}:{port}"
    if ops.role == "call":
        log.info("health probes: %s (/livez, /readyz, /healthz, /metrics)", web_url)
        return server, web_task, web_url
    log.info("web app: %s (operators: %s/faq, staff: %s/staff)", web_url, web_url, web_url)
    if webrtc:
        log.info("WebRTC test phone: %s/phone", web_url)
    return server, web_task, web_url


def _remote_phone_side(db: Any, ops: OperationsSettings, bus: Any) -> tuple[Any, Any]:
    """A web node's staff console (the call nodes' consoles) and test phone (calls placed
    on the call nodes); both None without the cluster secret."""
    if not ops.cluster.secret:
        log.warning(
            "no cluster secret set: calls transferred on call nodes cannot be answered "
            "from this node's staff page, and its test phone cannot call"
        )
        return None, None
    from dashboards.remote_console import RemoteStaffConsole
    from dashboards.remote_phone import RemotePhone

    console = RemoteStaffConsole(db, ops.cluster.secret)
    console.start()
    phone = RemotePhone(db, ops.cluster.secret, bus, max_calls=ops.web.max_test_phone_calls)
    phone.start()
    log.info("staff console and test phone: through the call nodes")
    return console, phone


async def _cluster_links(
    db: Any, ops: OperationsSettings, web_url: str, webrtc: Any
) -> list[Callable[[], Any]]:
    """With the cluster secret set: a call node offers its console and test phone to the
    web node (the stop withdraws them); a web node's remote test phone is closed at stop."""
    import socket
    from urllib.parse import urlsplit

    from dashboards.node_directory import advertise, withdraw

    if not ops.cluster.secret:
        return []
    if ops.role == "web":
        return [webrtc.close] if webrtc is not None else []
    if ops.role != "call":
        return []

    url = ops.cluster.advertise_url
    if not url:
        parts = urlsplit(web_url)
        wildcard = parts.hostname in ("0.0.0.0", "::")
        url = f"http://{socket.getfqdn()}:{parts.port}" if wildcard else web_url
    await asyncio.to_thread(advertise, db, ops.node, url.rstrip("/"), ops.cluster.secret)
    log.info("staff console: offered to the web node at %s", url)
    return [lambda: withdraw(db, ops.node)]


async def _start_sip(telephony: TelephonySettings, switchboard: Any, staff_console: Any) -> Any:
    """The SIP endpoint (dispatcher and pjsua workers), taking calls for the switchboard."""
    from telephony.sip_endpoint import SipEndpoint

    sip = SipEndpoint(telephony, on_call=switchboard.handle, staff_console=staff_console)
    await sip.start()
    log.info("SIP: %s (allowed peers: %s)", sip.uri, ", ".join(telephony.sip.allowed_peers))
    return sip


async def stop_service(service: RunningService, grace_s: float = 30.0) -> None:
    """Stop in the reverse order: calls first (politely), then endpoints, then records."""
    if service.switchboard is not None:
        await service.switchboard.drain(grace_s)
    if service.staff_console is not None:  # callers talking to staff: let them finish
        await service.staff_console.drain(grace_s)
    if service.sip is not None:
        await service.sip.stop()
    server, web_task = service.server
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(web_task, timeout=10)
    for stop in service.stops:
        done = stop()
        if inspect.isawaitable(done):
            await done
    if service.bot is not None and service.bot.rendering is not None:
        service.bot.rendering.cancel()
    await service.pipeline.stop()
    service.db.dispose()
    handled = service.switchboard.finished if service.switchboard is not None else 0
    log.info("stopped; %d call(s) handled", handled)


async def serve(
    core: Settings,
    telephony: TelephonySettings,
    ops: OperationsSettings,
    options: ServeOptions | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then shut down without cutting callers off."""
    options = options or ServeOptions()
    service = await start_service(core, telephony, ops, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("ready; press Ctrl+C to stop")
    sd_notify.notify("READY=1")
    interval = sd_notify.watchdog_interval_s()
    if interval is not None:
        service.stops.append(asyncio.create_task(sd_notify.watchdog_pings(interval)).cancel)
    try:
        await stop.wait()
        active = service.switchboard.active if service.switchboard is not None else ()
        log.info("shutting down: %d call(s) in progress", len(active))
        sd_notify.notify("STOPPING=1")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop_service(service, options.grace_s)


def _log_rendering(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error(
            "rendering the FAQ answers failed: %s (they are synthesised per call)", task.exception()
        )
    else:
        done = task.result()
        log.info(
            "all FAQ answers are rendered (%d now, in %s); every answer now starts without delay",
            done.rendered,
            format_duration(done.seconds),
        )


SCHEMA_LOCK = 0x766F6963  # PostgreSQL advisory lock key of the schema set-up ("voic")


def _create_tables(db: Any) -> None:
    """Missing tables and columns, made by one node at a time: nodes starting together on a
    fresh PostgreSQL database would otherwise race to create the same tables."""
    if db.engine.dialect.name != "postgresql":
        db.create_all()
        return
    from sqlalchemy import text

    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
        try:
            db.create_all()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})
            conn.commit()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
