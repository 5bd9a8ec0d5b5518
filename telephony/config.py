"""Settings of the telephony side: SIP endpoint, WebRTC, transfer to staff.

Read from the same ``voicebot.toml`` and ``VOICEBOT_*`` environment as the core
(sections ``[sip]``, ``[webrtc]``, ``[transfer]``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from voicebot.config import FileAndEnvSettings


class SipSettings(BaseModel):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="address the SIP endpoint binds to")
    port: int = Field(5060, ge=0, le=65535, description="UDP and TCP port (0: any free port)")
    user: str = Field("taxbot", description="user part of the bot's SIP URI")
    public_host: str | None = Field(None, description="address put in SDP/Contact if different")
    allowed_peers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="source addresses allowed to INVITE (the PBX); others get 403",
    )
    max_calls: int = Field(16, ge=1, le=512)
    workers: int | None = Field(
        None, ge=1, le=128, description="pjsua worker processes (default: max_calls / 4)"
    )
    codecs: list[str] = Field(default_factory=lambda: ["PCMU", "PCMA"])
    log_level: int = Field(1, ge=0, le=6, description="pjsip log level")


class WebRtcSettings(BaseModel):
    enabled: bool = True
    ice_servers: list[str] = Field(
        default_factory=list, description="STUN/TURN URLs; none by default (no external servers)"
    )


class TransferSettings(BaseModel):
    targets: list[str] = Field(
        default_factory=lambda: ["console"],
        description="tried in order: 'console' (browser staff console) or a SIP URI (REFER)",
    )
    ring_timeout_s: float = Field(30.0, gt=0, description="how long staff may take to answer")
    refer_timeout_s: float = Field(10.0, gt=0, description="how long a REFER may take")


class TelephonySettings(FileAndEnvSettings):
    """All settings of the telephony transports."""

    sip: SipSettings = Field(default_factory=SipSettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)
    transfer: TransferSettings = Field(default_factory=TransferSettings)
