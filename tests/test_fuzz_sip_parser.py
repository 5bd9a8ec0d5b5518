"""Coverage-guided fuzzing (atheris / libFuzzer) of the SIP parser the dispatcher runs on
strangers' bytes.

Properties checked on every input: parse_datagram, and each header-value parser (Via, URI,
name-addr, header parameters, lists, Contact rewriting) on every line of the input, raise
nothing but SipParseError; and one input never takes longer than
``BUDGET_MS + BUDGET_MS_PER_KB`` per kB (instrumented code, so generous, but a quadratic
path on a few kB blows through it).

The fuzzer runs in a subprocess (atheris instruments code in its own process and ends it
on a finding), seeded from the committed corpus of real messages in tests/data/fuzz/sip/
(new inputs it finds go to a temporary directory). ``SIP_FUZZ_SECONDS`` sets how long it
runs (default 5 s in the normal test run; e.g. SIP_FUZZ_SECONDS=600 for a long run). The
executions per second are printed and recorded as a test property.

Run by hand: python tests/test_fuzz_sip_parser.py -max_total_time=60 /tmp/new tests/data/fuzz/sip
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "fuzz" / "sip"
BUDGET_MS = 50.0
BUDGET_MS_PER_KB = 10.0
MAX_LEN = 16_384  # bytes per generated input (the parser's head bound is 8 kB)


def fuzz_one_input(data: bytes) -> None:
    """The atheris target: parse ``data`` every way the dispatcher may; assert the
    properties. An input over its time budget is retried twice (the machine is shared)
    before it counts as a finding."""
    elapsed = _parse_every_way(data)
    budget = (BUDGET_MS + BUDGET_MS_PER_KB * len(data) / 1024) / 1000
    if elapsed > budget:
        elapsed = min(elapsed, _parse_every_way(data), _parse_every_way(data))
        if elapsed > budget:
            raise AssertionError(
                f"{len(data)} bytes took {elapsed * 1000:.1f} ms (budget {budget * 1000:.1f} ms)"
            )


def _parse_every_way(data: bytes) -> float:
    from telephony.sip_message import (
        SipParseError,
        header_params,
        parse_datagram,
        parse_uri,
        parse_via,
        replace_uri_hostport,
        split_list,
        split_name_addr,
        uri_of,
    )

    start = time.perf_counter()
    try:
        message = parse_datagram(data)
    except SipParseError:
        message = None
    if message is not None:  # what the dispatcher reads from a parsed message
        _ = (message.method, message.call_id, message.to_tag, message.from_tag, message.status)
        _ = message.cseq_number
        for via in message.get_all("via"):
            parse_via(via).reply_address()
        for name in ("route", "record-route", "contact"):
            for value in message.get_all(name):
                with contextlib.suppress(SipParseError):
                    parse_uri(uri_of(value))
        parse_datagram(message.to_bytes())  # what it relays parses again
    text = data.decode("utf-8", "replace")
    values = [text] + [line.partition(":")[2] for line in text.splitlines()[:64]]
    parsers = (
        parse_via,
        parse_uri,
        uri_of,
        split_name_addr,
        header_params,
        split_list,
        lambda value: replace_uri_hostport(value, "192.0.2.1", 5060),
    )
    for value in values:
        for parse in parsers:
            with contextlib.suppress(SipParseError):
                parse(value)
    return time.perf_counter() - start


def rss_limit_mb(headroom_mb: int) -> int:
    """libFuzzer's memory limit for a child of this process: ``headroom_mb`` above this
    process's own peak. Linux keeps the peak resident size across exec (man getrusage),
    so a fuzzer started from a test run that has loaded the speech models starts out
    "using" their memory; a fixed limit would fail it for memory it never allocated."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + headroom_mb


def test_fuzz_sip_parser(tmp_path, record_property):
    """A few seconds of libFuzzer over the parser: no exception but SipParseError, no
    input over its time budget, and a fair number of executions."""
    seconds = int(os.environ.get("SIP_FUZZ_SECONDS", "5"))
    (tmp_path / "found").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            __file__,
            f"-max_total_time={seconds}",
            f"-max_len={MAX_LEN}",
            "-timeout=10",
            f"-rss_limit_mb={rss_limit_mb(1024)}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(tmp_path / "found"),
            str(CORPUS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    output = run.stderr + run.stdout
    assert run.returncode == 0, output[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", output).group(1))
    done = re.search(r"#\d+\s+DONE\s.*exec/s: (\d+)", output)
    per_s = int(done.group(1)) if done else round(runs / max(seconds, 1))
    record_property("sip_fuzz_executions", runs)
    record_property("sip_fuzz_exec_per_s", per_s)
    print(f"SIP parser fuzzing: {runs} inputs in {seconds} s, {per_s} exec/s")
    assert runs >= 50 * seconds, output[-2000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))


if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports():
        import telephony.sip_message  # noqa: F401
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()
