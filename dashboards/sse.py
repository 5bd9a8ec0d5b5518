"""Server-Sent Events framing for the live pages (monitor, test phone, staff console)."""

from __future__ import annotations

import json
from typing import Any


def sse(event: str, data: Any) -> bytes:
    """One SSE message: a named event with compact JSON data (Japanese kept readable)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()
