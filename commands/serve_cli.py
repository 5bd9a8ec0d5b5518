"""`voicebot serve` and `voicebot users`: the service commands.

They live apart from the core CLI because they pull in the telephony and web
extras; the core stays usable without them.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

SERVE_EPILOG = """\
Everything is configured in voicebot.toml (or --config) and VOICEBOT_* variables:
  [sip]      host, port, allowed_peers = ["10.0.0.5"], max_calls
  [transfer] targets = ["console", "sip:tax-staff@pbx.example.lg.jp"], ring_timeout_s
  [web]      host, port, secure_cookies
  [database] url = "postgresql+psycopg://voicebot@db/voicebot"   (default: SQLite)
  [mqtt]     host, port, prefix, site                            (default: in-process only)
  node = "call-1", role = "call"   (before any [section]; VOICEBOT_NODE, VOICEBOT_ROLE)
e.g. VOICEBOT_SIP__PORT=5070 VOICEBOT_WEB__PORT=8081 voicebot serve
Several machines (PostgreSQL and MQTT shared): `voicebot serve --role call` on each call
node behind a SIP proxy (deploy/kamailio), `voicebot serve --role web` for the operators.
"""


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dashboards.config import OperationsSettings
    from telephony.config import TelephonySettings
    from voicebot.config import Settings, load_settings

    core = load_settings(args.config, kind=Settings)
    telephony = load_settings(args.config, kind=TelephonySettings)
    ops = load_settings(args.config, kind=OperationsSettings)
    return core, telephony, ops


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the SIP endpoint, WebRTC and the web app until SIGINT/SIGTERM."""
    import asyncio
    import faulthandler

    from commands.service import ServeOptions, serve

    faulthandler.enable()  # a crash in a native library leaves every thread's stack in the log
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    core, telephony, ops = _load(args)
    if args.sip_port is not None:
        telephony.sip.port = args.sip_port
    if args.web_port is not None:
        ops.web.port = args.web_port
    if args.role is not None:
        ops.role = args.role
    progress = None
    if sys.stderr.isatty():
        from voicebot.tts.cache import text_progress_bar

        progress = text_progress_bar()
    options = ServeOptions(
        sip=not args.no_sip, webrtc=not args.no_webrtc, grace_s=args.grace, progress=progress
    )
    asyncio.run(serve(core, telephony, ops, options))
    _exit_after_orderly_stop()
    return 0


def _exit_after_orderly_stop() -> None:
    """Leave the process without interpreter finalization. The service has stopped in
    order by now (calls drained, records written, database closed), so finalization has
    nothing left to save; but it tears down the speech libraries' native state
    (CTranslate2, ONNX Runtime, espeak-ng) while their threads may still exist, which is
    where a stopped node has been seen to die of SIGSEGV instead of exiting 0."""
    import os

    logging.shutdown()  # flushes and closes every log handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_users_add(args: argparse.Namespace) -> int:
    """Create a web app user (asks for the password unless given in $VOICEBOT_NEW_PASSWORD)."""
    import os

    from dashboards.accounts import create_user
    from dashboards.db import Database

    _core, _telephony, ops = _load(args)
    password = os.environ.get("VOICEBOT_NEW_PASSWORD") or getpass.getpass("password: ")
    db = Database(ops.database_url())
    db.create_all()
    create_user(db, args.username, args.role, password)
    print(f"user {args.username} ({args.role}) created")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="answer calls (SIP, WebRTC) and run the operator/staff web app",
        description="Start the SIP endpoint, the WebRTC test phone and the web app with the "
        "embedded defaults (SIP on 127.0.0.1:5060, web on http://127.0.0.1:8080). "
        "Stops cleanly on Ctrl+C / SIGTERM: calls in progress finish or go to staff.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sip-port", type=int, help="SIP port (overrides [sip] port)")
    p.add_argument("--web-port", type=int, help="web app port (overrides [web] port)")
    p.add_argument(
        "--role",
        choices=["all", "call", "web"],
        help="what this node runs (overrides the role setting, default all): 'call' takes "
        "calls (bot, SIP, WebRTC; HTTP health probes only), 'web' serves the operator web "
        "app without a bot",
    )
    p.add_argument("--no-sip", action="store_true", help="do not start the SIP endpoint")
    p.add_argument("--no-webrtc", action="store_true", help="do not offer WebRTC calls")
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds calls may take to finish on shutdown"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("users", help="web app users")
    users = p.add_subparsers(dest="users_command", metavar="USERS_COMMAND", required=True)
    q = users.add_parser("add", help="create a user")
    q.add_argument("username")
    q.add_argument("role", choices=["admin", "operator", "staff", "viewer"])
    q.set_defaults(func=cmd_users_add)
