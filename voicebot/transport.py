"""How a call's audio gets in and out: the one interface every transport implements.

SIP, WebRTC and recorded WAV calls differ in codecs and signalling, but the call loop
only needs this: 20 ms frames of caller audio (or key presses) in, 20 ms frames of bot
audio out, a way to hand the caller to staff, and a way to hang up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from voicebot.frames import AudioFrame, DtmfFrame

if TYPE_CHECKING:
    from voicebot.dialogue import Handover


class TransferError(RuntimeError):
    """The transfer did not reach staff (refused, timed out, nobody answered)."""


class CallTransport(Protocol):
    """One call's connection to the caller."""

    name: str  # "sip", "webrtc", "recording"
    sample_rate: int  # rate of the int16 frames it delivers and accepts (8000 on phones)
    # Once ``receive()`` has returned None: why the line was cut if the caller did not hang
    # up (e.g. the SIP worker holding the call died), else None. Optional attribute.
    failure: str | None

    async def receive(self) -> AudioFrame | DtmfFrame | None:
        """The next caller frame (stamped on the call clock), a key press, or None: hung up."""
        ...

    async def send(self, frame: AudioFrame) -> None:
        """Play one frame of bot audio to the caller."""
        ...

    async def transfer(self, handover: Handover) -> str | None:
        """Hand the caller to staff; returns the target that took the call (None if the
        transport cannot tell). Raises TransferError if no target did."""
        ...

    async def hangup(self) -> None:
        """End the call from the bot's side."""
        ...
