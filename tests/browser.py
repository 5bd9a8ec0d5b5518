"""Browser-test helpers: the real web app under uvicorn, Debian's Chromium, logging in.

``running_app(tmp_path)`` starts ``create_app`` with a temporary SQLite database under
uvicorn in a background thread (its own event loop) on a free port, with one user per
role (``USERS``). ``chromium()`` launches /usr/bin/chromium through Playwright (never a
downloaded browser) and ``login(page, app, role)`` logs a page in through the real form.

Sync Playwright cannot run inside an asyncio loop, so browser tests are plain ``def``
tests; to do async work on the app's loop (emit events, await the bus) use
``app.run(coro)``.

    def test_something(tmp_path):
        with running_app(tmp_path) as app, chromium() as browser:
            page = browser.new_page()
            login(page, app, "operator")
            page.goto(app.url + "/faq")
            screenshot(page, tmp_path, "faq-list")
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dashboards.accounts import create_user
from dashboards.config import OperationsSettings
from dashboards.db import Database
from dashboards.services import Services

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
SCREENS = Path("/tmp/screens")  # copies of screenshots, for people to look at

# One seeded user per role: role -> (username, password).
USERS: dict[str, tuple[str, str]] = {
    role: (f"test-{role}", f"{role}-pass-1234") for role in ("admin", "operator", "staff", "viewer")
}

T = TypeVar("T")


@dataclass
class RunningApp:
    """A live app: its base URL, services, and the loop it runs on."""

    url: str
    services: Services
    app: Any
    loop: asyncio.AbstractEventLoop
    users: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(USERS))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the app's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def make_services(tmp_path: Path, **overrides: Any) -> Services:
    """Services over a fresh SQLite database in ``tmp_path`` (tables made, users seeded)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = OperationsSettings(
        data_dir=data_dir, web={"initial_admin_password": "initial-admin-pass"}
    )
    db = Database(f"sqlite:///{data_dir / 'web.db'}")
    db.create_all()
    seed_users(db)
    if "bus" not in overrides:
        from dashboards.event_bus import EventBus

        overrides["bus"] = EventBus()
    return Services(settings=settings, db=db, **overrides)


def seed_users(db: Database) -> None:
    """One user per role with the passwords in ``USERS`` (skips ones that exist)."""
    from dashboards.accounts import get_user

    for role, (username, password) in USERS.items():
        if get_user(db, username) is None:
            create_user(db, username, role, password, display_name=f"テスト{role}")


@contextmanager
def running_app(
    tmp_path: Path,
    services: Services | None = None,
    build: Callable[[Services], Any] | None = None,
    web: Any = None,
) -> Iterator[RunningApp]:
    """Serve the app with uvicorn on 127.0.0.1:<free port> in a background thread.

    With ``web`` (``WebSettings``), exactly as the service serves it (``server_config``).
    """
    import uvicorn

    from dashboards.app import create_app
    from dashboards.web_server import server_config

    services = services or make_services(tmp_path)
    app = (build or create_app)(services)
    if web is not None:
        config = server_config(app, web, host="127.0.0.1", port=0)
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:  # reported to the waiting test below
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="uvicorn-test", daemon=True)
    thread.start()
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start: {failure!r}")
        thread.join(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningApp(f"http://127.0.0.1:{port}", services, app, loop)
    finally:
        server.should_exit = True
        thread.join(15)
        services.db.dispose()


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """Debian's headless Chromium via Playwright (sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **launch
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = 1280, height: int = 900) -> Any:
    """A Japanese-locale page that fails the test on any request leaving 127.0.0.1."""
    context = browser.new_context(locale="ja-JP", viewport={"width": width, "height": height})
    outside: list[str] = []

    def check(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", check)
    page = context.new_page()
    page.outside_requests = outside  # type: ignore[attr-defined]
    return page


def login(page: Any, app: RunningApp, role: str, next_path: str = "/") -> None:
    """Log ``page`` in as the seeded user of ``role`` through the login form."""
    username, password = app.users[role]
    page.goto(f"{app.url}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if "/login" in page.url:
        raise AssertionError(f"login as {role} failed: {page.url}")


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page PNG in ``tmp_path``, copied to /tmp/screens/ for review."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENS / path.name)
    return path
