"""Benchmark: what hostile uploads and login bursts cost the web app now.

Prints JSON:

* ``xlsx_bombs``: for each crafted workbook (one row of 400,000 cells; a member larger
  than the unpacked limit; two million empty rows; a styles.xml of 100,000 cell formats),
  its size, how long refusing it took and the peak memory Python allocated meanwhile
  (tracemalloc);
* ``csv_bombs``: the same for 5 MB of newlines and 5 MB of commas;
* ``login_burst``: 40 concurrent wrong passwords for one account (sent from a separate
  process) against the real app under uvicorn (SQLite): status codes, how many argon2
  checks ran, and the longest the app's event loop was late meanwhile.

    python bench/web_limits.py
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import platform
import random
import re
import sys
import tempfile
import threading
import time
import tracemalloc
import zipfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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


def wide_incompressible_row(cells: int = 300_000) -> bytes:
    """One row of numbered cells with random values: zips only ~3x, so the container
    checks pass and the cell budget has to catch it."""
    rng = random.Random(7)
    body = b"".join(b"<c><v>%d</v></c>" % rng.randrange(10**9) for _ in range(cells))
    return SHEET_HEAD + b'<row r="1">' + body + b"</row>" + SHEET_TAIL


def xlsx_with_styles(formats: int = 100_000) -> bytes:
    """A workbook whose styles.xml holds ``formats`` cell formats (varied, so it zips only
    ~30x): small enough for the size checks, read whole by openpyxl."""
    rng = random.Random(2)
    xfs = b"".join(
        b'<xf numFmtId="%d" fontId="0" fillId="0" borderId="0" xfId="0"/>' % rng.randrange(200)
        for _ in range(formats)
    )
    styles = (
        b'<?xml version="1.0" encoding="UTF-8"?><styleSheet '
        b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<fonts count="1"><font><sz val="11"/></font></fonts>'
        b'<fills count="1"><fill><patternFill/></fill></fills><borders count="1"><border/>'
        b'</borders><cellXfs count="%d">' % formats + xfs + b"</cellXfs></styleSheet>"
    )
    out = io.BytesIO()
    template = faq_io.export_xlsx([])
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = styles if item.filename == "xl/styles.xml" else src.read(item)
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


def fire_logins(url: str, username: str, token: str, count: int) -> list[int]:
    """``count`` wrong passwords at once, from a separate process (its own GIL)."""

    def post(_i: int) -> int:
        form = {"username": username, "password": "wrong-password", "csrf_token": token}
        cookie = {"Cookie": f"voicebot_login_csrf={token}"}
        return httpx.post(url + "/login", data=form, headers=cookie, timeout=300).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


async def loop_lag(stop: threading.Event) -> float:
    """The longest a 10 ms sleep overran on the app's event loop until ``stop``."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)
        worst = max(worst, loop.time() - t - 0.01)
    return worst


def login_burst(tmp: Path, count: int = 40) -> dict:
    with running_app(tmp) as app, httpx.Client(timeout=120) as client:
        username, _password = USERS["operator"]
        page = client.get(app.url + "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        checks = []
        real = accounts.verify_password
        accounts.verify_password = lambda h, p: checks.append(1) or real(h, p)
        stop = threading.Event()
        lag = asyncio.run_coroutine_threadsafe(loop_lag(stop), app.loop)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            statuses = pool.submit(fire_logins, app.url, username, token, count).result()
        seconds = time.perf_counter() - t0
        stop.set()
        worst_lag = lag.result(10)
        accounts.verify_password = real
    return {
        "attempts": count,
        "seconds_including_client_start": round(seconds, 3),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "argon2_checks": len(checks),
        "event_loop_max_lag_ms": round(worst_lag * 1000, 1),
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
            "wide-row-incompressible": wide_incompressible_row(),
        }
        xlsx = {k: refuse("b.xlsx", xlsx_with_sheet(v), versions) for k, v in bombs.items()}
        xlsx["many-styles"] = refuse("b.xlsx", xlsx_with_styles(), versions)
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
