"""Settings of the telephony side: SIP endpoint, WebRTC, transfer to staff.

Read from the same ``voicebot.toml`` and ``VOICEBOT_*`` environment as the core
(sections ``[sip]``, ``[webrtc]``, ``[transfer]``).
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, Field, model_validator

from telephony.sip_limits import SipLimits
from voicebot.config import FileAndEnvSettings


class SipLimitSettings(BaseModel):
    """Deadlines and caps of the public SIP port (see ``telephony.sip_limits``)."""

    timer_b_s: float = Field(32.0, gt=0, description="INVITE without a final response: slot freed")
    timer_h_s: float = Field(32.0, gt=0, description="answer never acknowledged: slot freed")
    max_call_s: float = Field(4 * 3600.0, gt=0, description="a call longer than this is ended")
    media_timeout_s: float = Field(
        60.0, gt=0, description="a call whose caller sent no RTP this long is hung up"
    )
    max_calls_per_source: int = Field(
        0,
        ge=0,
        description="call slots one source address may hold (0: no cap; a single PBX trunk "
        "is one source, so set this only when several PBXs share the bot)",
    )
    tcp_max_connections: int = Field(64, ge=1, description="TCP connections in total")
    tcp_max_per_source: int = Field(8, ge=1, description="TCP connections per source address")
    tcp_idle_s: float = Field(60.0, gt=0, description="idle TCP connection (no call) closed")
    tcp_max_write_buffer: int = Field(
        256 * 1024, ge=4096, description="bytes queued to a peer that does not read: closed"
    )

    def to_limits(self) -> SipLimits:
        return replace(SipLimits(), **self.model_dump())


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
    rtp_port_min: int = Field(
        10000,
        ge=1024,
        le=65535,
        description="first UDP port of the workers' RTP and RTCP (VOICEBOT_SIP__RTP_PORT_MIN)",
    )
    rtp_port_max: int = Field(
        19999,
        ge=1024,
        le=65535,
        description="last UDP port of the workers' RTP and RTCP: the range to open to the PBX "
        "or SBC only; each worker takes its share and starts at a random port of it "
        "(VOICEBOT_SIP__RTP_PORT_MAX)",
    )
    max_calls: int = Field(16, ge=1, le=512)
    workers: int | None = Field(
        None, ge=1, le=128, description="pjsua worker processes (default: max_calls / 4)"
    )
    codecs: list[str] = Field(default_factory=lambda: ["PCMU", "PCMA"])
    log_level: int = Field(1, ge=0, le=6, description="pjsip log level")
    limits: SipLimitSettings = Field(default_factory=SipLimitSettings)

    @model_validator(mode="after")
    def _rtp_range_in_order(self) -> SipSettings:
        if self.rtp_port_max <= self.rtp_port_min:
            raise ValueError("rtp_port_max must be above rtp_port_min")
        return self


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
