"""No caller's number, key presses or words in the logs: a real SIP call through sipp.

sipp calls from sip:0312345678@..., the caller presses keys the bot ignores (3-9: a
number typed on the keypad) and hangs up. Every log record of this process (the SIP
endpoint, the switchboard, the call; DEBUG included) is searched for the number and the
keys. The call id is what ties the log to the masked call record instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sipp.rtp_peer import RtpPeer
from sipp.sip_harness import run_sipp, shared_bot, sip_bot

CALLER = "0312345678"  # the user part of sipp's From in uac_hangup.xml
KEYS = "3456789"


def test_logs_hold_no_caller_number_and_no_keys(tmp_path, caplog):
    bot = shared_bot()

    async def scenario():
        async with sip_bot(bot) as sut:
            peer = await RtpPeer.open()
            try:
                sipp = asyncio.create_task(
                    run_sipp(
                        "uac_hangup.xml",
                        sut.port,
                        tmp_path,
                        keys={"rtp_port": str(peer.port)},
                        extra=["-d", "6000"],
                    )
                )
                await peer.wait_for_bot()
                for key in KEYS:
                    await peer.press(key)
                    await asyncio.sleep(0.2)
                run = await sipp
                for _ in range(100):
                    if sut.results:
                        break
                    await asyncio.sleep(0.05)
            finally:
                peer.close()
            return sut, run

    with caplog.at_level(logging.DEBUG):
        sut, run = asyncio.run(scenario())
    assert run.returncode == 0, run.stdout + run.errors
    assert [r.outcome for r in sut.results] == ["hung_up"]
    logged = [r.getMessage() for r in caplog.records]
    call_id = sut.results[0].call_id
    assert any(call_id in line for line in logged)  # the call is in the log, by its id
    with_number = [line for line in logged if re.search(r"1\D?2\D?3\D?4\D{0,3}5\D?6\D?7\D?8", line)]
    keys_logged = [line for line in logged if re.search(r"(DTMF|key)\W*[3-9]", line)]
    assert not with_number and not keys_logged, (with_number, keys_logged)
