"""Audio between two call legs: the caller (SIP or WebRTC) and a staff member's browser.

Once staff answer a transferred call, the bot is out of the conversation; what is left
is to pump audio both ways, converting the rate (8 kHz phone, 16 kHz WebRTC), and to
end both legs when one side hangs up, so that nobody stays on a dead line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from voicebot.frames import AudioFrame, DtmfFrame, Frame
from voicebot.resample import StreamResampler
from voicebot.transport import CallTransport

log = logging.getLogger(__name__)

FRAME_MS = 20


class AudioPump:
    """Frames from one transport to another, resampled and re-cut into 20 ms frames."""

    def __init__(self, source: CallTransport, sink: CallTransport):
        self.source = source
        self.sink = sink
        self._resampler = (
            StreamResampler(source.sample_rate, sink.sample_rate)
            if source.sample_rate != sink.sample_rate
            else None
        )
        self._frame_samples = sink.sample_rate * FRAME_MS // 1000
        self._pending = np.zeros(0, dtype=np.int16)
        self._sent = 0
        self.frames = 0  # frames delivered to the sink
        # Set when the other direction ended: a reader whose cancel was lost (a transport
        # that swallows it) still stops at its next frame.
        self.stopped = False

    async def forward(self, frame: Frame) -> None:
        if isinstance(frame, DtmfFrame):
            log.debug("bridge: a key during a staff call (not forwarded)")
            return
        if not isinstance(frame, AudioFrame):
            return
        samples = frame.samples
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        self._pending = np.concatenate([self._pending, samples])
        n = self._frame_samples
        while len(self._pending) >= n:
            chunk, self._pending = self._pending[:n], self._pending[n:]
            stamp = self._sent * 1000.0 / self.sink.sample_rate
            await self.sink.send(AudioFrame.from_samples(chunk, self.sink.sample_rate, stamp))
            self._sent += n
            self.frames += 1

    async def run(self, first: Frame | None = None) -> None:
        """Until the source hangs up (receive() gives None)."""
        if first is not None:
            await self.forward(first)
        while not self.stopped:
            frame = await self.source.receive()
            if frame is None or self.stopped:
                return
            await self.forward(frame)


async def bridge(
    caller: CallTransport, staff: CallTransport, first_caller_frame: Frame | None = None
) -> str:
    """Connect two legs until either hangs up, then hang up the other.

    Returns which side ended the call: "caller" or "staff". A leg that fails (an
    exception while sending or receiving) counts as hung up, and the other is closed.
    """
    to_staff = AudioPump(caller, staff)
    to_caller = AudioPump(staff, caller)
    tasks = {
        asyncio.create_task(to_staff.run(first_caller_frame), name="bridge-caller-to-staff"): (
            "caller"
        ),
        asyncio.create_task(to_caller.run(), name="bridge-staff-to-caller"): "staff",
    }
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _hang_up_all(caller, staff)
        raise
    first = next(iter(done))
    ended_by = tasks[first]
    if first.exception() is not None:
        log.warning("bridge: %s leg failed: %r", ended_by, first.exception())
    to_staff.stopped = to_caller.stopped = True
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    other = staff if ended_by == "caller" else caller
    with contextlib.suppress(Exception):
        await other.hangup()
    if first.exception() is not None:
        await _hang_up_all(caller, staff)
    log.info(
        "bridge: ended by %s after %d/%d frames (to staff/to caller)",
        ended_by,
        to_staff.frames,
        to_caller.frames,
    )
    return ended_by


async def _hang_up_all(*legs: CallTransport) -> None:
    for leg in legs:
        with contextlib.suppress(Exception):
            await leg.hangup()
