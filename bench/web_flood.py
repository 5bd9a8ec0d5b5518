"""Flood the web app with many concurrent HTTP requests for a while; print what came back.

Run as its own process (bench/soak.py starts it) so that the flood's threads never steal
the event loop of the callers measuring their audio. A mix of what an unauthenticated
client can send: GET of the login page, /healthz, /metrics, the OpenAPI document and a
page that needs a login (redirected), POSTs of wrong passwords (bounded by the app's
login throttle) and of writes without a login (refused before the body is read).
Prints JSON: requests sent, answers by status, connection errors, requests per second.

    python bench/web_flood.py http://127.0.0.1:8080 --seconds 15 --threads 48
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

REQUESTS = [
    ("GET", "/healthz", None),
    ("GET", "/login", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/monitor", None),
    ("POST", "/login", "username=nobody&password=wrong-password"),
    ("POST", "/api/faq/try", '{"text": "住民税の納付書をなくしました"}'),
]


def flood(url: str, seconds: float, threads: int) -> dict:
    """``threads`` keep-alive clients sending the mix until ``seconds`` have passed."""
    target = urllib.parse.urlsplit(url)
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        i = n
        while time.monotonic() < deadline:
            method, path, body = REQUESTS[i % len(REQUESTS)]
            i += 1
            headers = {}
            if body is not None:
                kind = "application/json" if body.startswith("{") else "form-urlencoded"
                headers["Content-Type"] = (
                    kind if kind == "application/json" else "application/x-www-form-urlencoded"
                )
            try:
                conn.request(method, path, body=body.encode() if body else None, headers=headers)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses[str(response.status)] += 1
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    elapsed = time.monotonic() - started
    answered = sum(statuses.values())
    return {
        "threads": threads,
        "seconds": round(elapsed, 1),
        "responses": answered,
        "by_status": dict(statuses),
        "errors": dict(errors),
        "responses_per_s": round(answered / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="base URL of the web app, e.g. http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to flood")
    parser.add_argument("--threads", type=int, default=48, help="concurrent clients")
    args = parser.parse_args()
    print(json.dumps(flood(args.url, args.seconds, args.threads)))


if __name__ == "__main__":
    main()
