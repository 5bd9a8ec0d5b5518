"""Settings of the operations side: web app, database, MQTT, retention, reports.

Read from the same ``voicebot.toml`` and ``VOICEBOT_*`` environment as the core
(sections ``[web]``, ``[database]``, ``[mqtt]``, ``[retention]``, ``[reports]``,
``[cluster]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from voicebot.config import FileAndEnvSettings


def default_data_dir() -> Path:
    """Where records, the outbox and published FAQ live unless configured."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taxline-voicebot"


class WebSettings(BaseModel):
    host: str = Field("127.0.0.1", description="address the web app listens on")
    port: int = Field(8080, ge=0, le=65535)
    secret_key: str | None = Field(
        None, description="signs session cookies; default: a random key kept in the data dir"
    )
    secure_cookies: bool = Field(False, description="mark cookies Secure (set true behind HTTPS)")
    session_hours: float = Field(8.0, gt=0)
    initial_admin_password: str | None = Field(
        None, description="password of the first 'admin' user; default: generated and logged once"
    )
    max_connections: int = Field(
        200, ge=1, description="connections and requests at once; beyond this: 503"
    )
    keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection closes after")
    max_header_bytes: int = Field(
        16 * 1024, ge=4096, description="request line and headers together; larger: 400"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="time a client has to send a request's line and headers; 408"
    )
    max_test_phone_calls: int = Field(
        2, ge=1, description="test-phone (WebRTC) calls at once, all users (one per user); 429"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (the "
            "client address for login limits and the audit log); empty: never believed"
        ),
    )


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql+psycopg://host/db; default: SQLite"
    )


class MqttSettings(BaseModel):
    host: str | None = Field(None, description="broker host; unset: in-process bus only")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    prefix: str = Field("voicebot", description="topic prefix")
    site: str = Field("default", description="site name in topics: <prefix>/<site>/calls/...")
    qos: int = Field(1, ge=0, le=2)


class RetentionSettings(BaseModel):
    days: int = Field(90, ge=1, description="call records older than this are purged")
    audit_days: int = Field(
        365, ge=1, description="audit log rows (logins, FAQ changes) older than this are purged"
    )


class ReportSettings(BaseModel):
    staff_minutes_per_call: float = Field(
        6.0, gt=0, description="staff time one call takes, for 'hours saved'"
    )


class ClusterSettings(BaseModel):
    secret: str | None = Field(
        None,
        pattern=r"^[\x21-\x7e]{16,256}$",  # printable ASCII, no spaces: it goes in a header
        description=(
            "shared by every node (16 or more printable characters, no spaces): the web "
            "node's staff console and test phone reach the call nodes with it; unset: "
            "transfers to the console are answered only on the node that holds the call"
        ),
    )
    advertise_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#\s]+/?$",
        description=(
            "how other nodes reach this call node's HTTP server (e.g. http://call-a:8080); "
            "default: the address it listens on"
        ),
    )


class OperationsSettings(FileAndEnvSettings):
    """All settings of the web app and the data behind it."""

    # Passwords and the cluster secret live here: an invalid setting's error names the
    # setting and the rule, never the value.
    model_config = SettingsConfigDict(**FileAndEnvSettings.model_config, hide_input_in_errors=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    role: Literal["all", "call", "web"] = Field(
        "all",
        description=(
            "what this node runs: 'call' (bot, SIP, WebRTC, health probes only), 'web' (the "
            "operator web app, no bot) or 'all' (both); nodes share the database and broker"
        ),
    )
    web: WebSettings = Field(default_factory=WebSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    def database_url(self) -> str:
        from dashboards.db import default_url

        return self.database.url or default_url(self.data_dir)
