"""Drives real pjsua2 audio ports through the teardown race of a call's end; run by
tests/test_pjsua_ports.py in a process of its own (pjsua is one per process, and the
race, when it is lost, kills the process).

The race: pjmedia's clock thread calls a port's Python callbacks every 20 ms and must take
the GIL to do so; the pjsua thread ends the call while holding the GIL. Here the pjsua
thread holds the GIL for 45 ms before each teardown (with a 1 s switch interval), so the
clock thread is always waiting inside a callback when the teardown starts.

    python tests/pjsua_port_race.py pool|destroy ROUNDS

``pool`` ends each call as the SIP worker does (``PortPool.give_back``, ``close`` at the
end); ``destroy`` drops the ports while the clock runs, as the worker did before. Prints
JSON: rounds done, frames each way, and callback failures logged.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pjsua2 as pj

from telephony.pjsua_call import FRAME_BYTES, SAMPLE_RATE, FramePort, PortPool


class Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        print(record.getMessage(), record.exc_info and record.exc_info[1], file=sys.stderr)


class Leg:
    """One side of a call: the bot's audio to play and a count of what it received."""

    def __init__(self) -> None:
        self.received = 0
        self.played = 0

    def pcm_received(self, pcm: bytes) -> None:
        self.received += 1

    def next_pcm(self) -> bytes | None:
        self.played += 1
        return bytes(FRAME_BYTES)


def pump(ep: pj.Endpoint, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ep.libHandleEvents(5)


def hold_gil(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def main(mode: str, rounds: int) -> int:
    failures = Failures()
    logging.getLogger("telephony.pjsua_call").addHandler(failures)
    sys.setswitchinterval(1.0)
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = cfg.logConfig.consoleLevel = 0
    media = cfg.medConfig
    media.clockRate = media.sndClockRate = SAMPLE_RATE
    media.channelCount = 1
    media.audioFramePtime = 20
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    ep.libStart()
    pool = PortPool(4)
    legs: list[Leg] = []
    for n in range(rounds):
        caller, bot = Leg(), Leg()
        legs += [caller, bot]
        if mode == "pool":
            a, b = pool.take(caller), pool.take(bot)
        else:
            a, b = FramePort(caller), FramePort(bot)
            a.create(f"a{n}")
            b.create(f"b{n}")
        a.startTransmit(b)
        b.startTransmit(a)
        pump(ep, random.uniform(0.02, 0.06))
        hold_gil(0.045)  # the clock thread now waits for the GIL inside a callback
        if mode == "pool":
            pool.give_back(a)
            pool.give_back(b)
            a.stopTransmit(b)
            b.stopTransmit(a)
        del a, b  # in "destroy" mode: the ports' last references
        gc.collect()
    pool.close(ep)
    ep.libDestroy()
    print(
        json.dumps(
            {
                "rounds": rounds,
                "ports_made": len(pool.ports),
                "frames_received": sum(leg.received for leg in legs),
                "frames_played": sum(leg.played for leg in legs),
                "failures": failures.count,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
