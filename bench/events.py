"""Benchmark: the cost of call events on their way out (masking, live bus, MQTT).

Prints JSON: masking time per utterance, EventBus emit time (one live subscriber), and
MQTT publishing throughput (QoS 1, durable outbox) against a Mosquitto started here on a
free port (Debian's ``mosquitto`` must be installed).

    python bench/events.py [--events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mosquitto import Mosquitto  # noqa: E402

from dashboards.config import MqttSettings  # noqa: E402
from dashboards.event_bus import EventBus  # noqa: E402
from dashboards.mqtt_publisher import MqttPublisher  # noqa: E402
from privacy.masking import mask_text  # noqa: E402
from voicebot.events import IntentDecided, Recognized  # noqa: E402

PERSONAL = [
    "電話番号は090-1234-5678です",
    "マイナンバーは1234 5678 9012です",
    "生年月日は昭和30年4月1日です",
    "口座番号は1234567で、住所は中央区港町3丁目5番2号です",
]


def utterances() -> list[str]:
    with (ROOT / "tests" / "data" / "dev-utterances.tsv").open(encoding="utf-8") as f:
        rows = [r[0] for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")][1:]
    return rows + PERSONAL


def percentiles(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
    }


def bench_masking(texts: list[str], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        for text in texts:
            t = time.perf_counter()
            mask_text(text)
            times.append((time.perf_counter() - t) * 1e6)
    return {"utterances": len(texts) * repeat, **percentiles(times)}


async def bench_bus(texts: list[str], n: int) -> dict[str, float]:
    bus = EventBus()
    received = 0

    async def listen() -> None:
        nonlocal received
        async with bus.subscribe() as sub:
            async for _ in sub:
                received += 1
                if received == n:
                    return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    times = []
    for i in range(n):
        event = Recognized(
            call_id=f"c{i % 8}", t_ms=float(i), text=texts[i % len(texts)], final=True
        )
        t = time.perf_counter()
        bus.emit(event)
        times.append((time.perf_counter() - t) * 1e6)
        if i % 100 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(listener, 30)
    return {"events": n, "delivered": received, **percentiles(times)}


async def bench_mqtt(n: int, workdir: Path) -> dict[str, float]:
    with Mosquitto(workdir / "broker") as broker:
        settings = MqttSettings(host=broker.host, port=broker.port, site="bench")
        publisher = MqttPublisher(settings, workdir / "outbox.sqlite3")
        await publisher.start()
        await publisher.wait_connected(10)
        started = time.perf_counter()
        for i in range(n):
            publisher.emit(
                IntentDecided(
                    call_id=f"c{i % 8}",
                    t_ms=float(i),
                    text="納付書をなくしました",
                    faq_id="payment.lost-notice",
                    score=0.9,
                    action="answer",
                )
            )
        while publisher.sent < n:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        await publisher.stop()
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    texts = utterances()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "masking": bench_masking(texts, args.repeat),
            "bus_emit": asyncio.run(bench_bus(texts, args.events)),
            "mqtt_publish": asyncio.run(bench_mqtt(args.events, Path(tmp))),
        }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
