"""Where call events go: masked first, then to the live bus, the call records and MQTT.

One ``EventPipeline`` per process is the EventSink the calls emit to. It masks every
event (``MaskingSink``) before fanning it out, so no store or viewer ever gets the
caller's personal data, and each destination is optional:

* ``bus``: the in-process live view (monitor page, staff console);
* ``db``: call records through ``dashboards.recorder.CallRecorder``;
* ``[mqtt] host``: ``MqttPublisher`` with its durable outbox in the data directory; with
  a bus as well, an ``MqttSubscriber`` brings the calls of other processes of the same
  site into the bus (repeats of this process's own events are dropped by the bus).

A failing destination never disturbs a call (``EventFanout`` logs and carries on).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from dashboards.config import OperationsSettings
from privacy.masking import MaskingSink
from voicebot.events import CallEvent, EventFanout, EventSink

log = logging.getLogger(__name__)

OUTBOX_FILE = "mqtt-outbox.sqlite3"


class EventPipeline:
    """The EventSink of a process: masking → bus, records, MQTT. ``start``/``stop`` it."""

    def __init__(
        self,
        ops_settings: OperationsSettings,
        *,
        bus: Any | None = None,
        db: Any | None = None,
        outbox_path: Path | None = None,
        subscribe: bool = True,
    ):
        from dashboards.event_bus import EventBus

        self.settings = ops_settings
        self.bus: EventBus | None = bus
        self.db = db
        self.fanout = EventFanout()
        self.recorder: Any | None = None
        self.publisher: Any | None = None
        self.subscriber: Any | None = None
        if bus is not None:
            self.fanout.add(bus)
        if db is not None:
            self.recorder = _call_recorder(db, ops_settings.mqtt.site)
            if self.recorder is not None:
                self.fanout.add(self.recorder)
        mqtt = ops_settings.mqtt
        if mqtt.host:
            from dashboards.mqtt_publisher import MqttPublisher, MqttSubscriber

            self.outbox_path = outbox_path or ops_settings.data_dir / OUTBOX_FILE
            self.publisher = MqttPublisher(mqtt, self.outbox_path)
            self.fanout.add(self.publisher)
            if bus is not None and subscribe:
                self.subscriber = MqttSubscriber(mqtt, bus)
        self._sink = MaskingSink(self.fanout)

    def add(self, sink: EventSink) -> None:
        """Another destination, after masking."""
        self.fanout.add(sink)

    def emit(self, event: CallEvent) -> None:
        """EventSink: mask, then hand to every destination (returns at once)."""
        self._sink.emit(event)

    async def start(self) -> None:
        if self.publisher is not None:
            from dashboards.outbox import OutboxError

            try:
                await self.publisher.start()
            except OutboxError as exc:
                # Calls must go on: records and the live view still work without MQTT.
                log.error("%s; call events are NOT published to MQTT", exc)
                self.fanout.sinks.remove(self.publisher)
                self.publisher = None
        if self.publisher is not None:
            log.info(
                "events: MQTT %s:%d, topics %s/%s/calls/<call_id>/<event>",
                self.settings.mqtt.host,
                self.settings.mqtt.port,
                self.settings.mqtt.prefix,
                self.settings.mqtt.site,
            )
        if self.subscriber is not None:
            await self.subscriber.start()

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Flush: MQTT gets ``flush_timeout_s`` (the rest stays in the outbox), the
        records are written completely."""
        if self.subscriber is not None:
            await self.subscriber.stop()
        if self.publisher is not None:
            await self.publisher.stop(flush_timeout_s)
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)


def _call_recorder(db: Any, site: str) -> Any | None:
    try:
        from dashboards.recorder import CallRecorder
    except ModuleNotFoundError as exc:
        if exc.name != "dashboards.recorder":
            raise
        log.warning("call records are not available yet: calls are not stored")
        return None
    return CallRecorder(db, site=site)
