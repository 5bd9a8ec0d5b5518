"""Benchmark: what hostile uploads and login bursts cost the web app now.

Prints JSON:

* ``xlsx_bombs``: for each crafted workbook (one row of 400,000 cells; a member larger
  than the unpacked limit; two million empty rows), its size, how long refusing it took
  and the peak memory Python allocated meanwhile (tracemalloc);
* ``csv_bombs``: the same for 5 MB of newlines and 5 MB of commas;
* ``login_burst``: 40 concurrent wrong passwords for one account against the real app
  under uvicorn (SQLite): wall time, status codes, how many argon2 checks ran, and the
  slowest ``/healthz`` answer while the burst was running (the event loop stays free).

    python bench/web_limits.py
"""

from __future__ import annotations

import io
import json
import platform
import re
import sys
import tempfile
import threading
import time
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from browser import USERS, running_app  # noqa: E402

from dashboards import accounts, faq_io  # noqa: E402
from dashboards.faq_versions import FaqVersions  # noqa: E402

SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><worksheet '
    b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_TAIL = b"</sheetData></worksheet>"


def xlsx_with_sheet(sheet_xml: bytes) -> bytes:
    template = faq_io.export_xlsx([])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = sheet_xml if item.filename == "xl/worksheets/sheet1.xml" else src.read(item)
            dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def refuse(name: str, data: bytes, versions: FaqVersions) -> dict:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        faq_io.import_file(name, data, versions.city, versions.synonyms_path)
        outcome = "imported"
    except faq_io.FaqImportError as exc:
        outcome = str(exc.errors[0].message)
    seconds = time.perf_counter() - t0
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "bytes": len(data),
        "seconds": round(seconds, 3),
        "peak_mib": round(peak / 2**20, 1),
        "outcome": outcome,
    }


def login_burst(tmp: Path) -> dict:
    with running_app(tmp) as app, httpx.Client(timeout=120) as client:
        username, _password = USERS["operator"]
        page = client.get(app.url + "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        cookie = {"Cookie": f"voicebot_login_csrf={token}"}
        checks = []
        real = accounts.verify_password
        accounts.verify_password = lambda h, p: checks.append(1) or real(h, p)
        health: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t = time.perf_counter()
                httpx.get(app.url + "/healthz", timeout=60)
                health.append(time.perf_counter() - t)
                time.sleep(0.02)

        def post(_i: int) -> int:
            form = {"username": username, "password": "wrong-password", "csrf_token": token}
            answer = httpx.post(app.url + "/login", data=form, headers=cookie, timeout=120)
            return answer.status_code

        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(post, range(40)))
        seconds = time.perf_counter() - t0
        done.set()
        prober.join()
        accounts.verify_password = real
    return {
        "attempts": 40,
        "seconds": round(seconds, 3),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "argon2_checks": len(checks),
        "healthz_max_ms": round(max(health) * 1000, 1) if health else None,
        "healthz_samples": len(health),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        from dashboards.db import Database

        versions = FaqVersions(Database(f"sqlite:///{tmp / 'faq.db'}"), tmp / "data")
        versions.db.create_all()
        versions.ensure_initial_version()
        bombs = {
            "wide-row": SHEET_HEAD + b'<row r="1">' + b"<c/>" * 400_000 + b"</row>" + SHEET_TAIL,
            "huge-member": SHEET_HEAD
            + b"<!--"
            + b" " * (faq_io.XLSX_MAX_UNCOMPRESSED + 1)
            + b"-->"
            + SHEET_TAIL,
            "many-rows": SHEET_HEAD + b"<row/>" * 2_000_000 + SHEET_TAIL,
        }
        xlsx = {k: refuse("b.xlsx", xlsx_with_sheet(v), versions) for k, v in bombs.items()}
        csvs = {
            "newlines": refuse("b.csv", b"\n" * (faq_io.MAX_BYTES - 10), versions),
            "commas": refuse("b.csv", b"," * (faq_io.MAX_BYTES - 10) + b"\n", versions),
        }
        burst = login_burst(tmp / "app")
    print(
        json.dumps(
            {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "xlsx_bombs": xlsx,
                "csv_bombs": csvs,
                "login_burst": burst,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
