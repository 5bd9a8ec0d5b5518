"""Schemathesis against the app's own OpenAPI schema, logged in as an admin: no 5xx.

Every documented operation (other modules' routers included) gets generated requests,
valid and invalid; a server error fails the test. A 503 that explains in Japanese that a
part is not running here (no bot, no staff console in this test) is by design.
"""

from __future__ import annotations

import pytest
import schemathesis
from browser import USERS, make_services
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from dashboards.accounts import authenticate, create_session
from dashboards.app import create_app
from dashboards.security import SESSION_COOKIE


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("fuzz"))
    app = create_app(services)
    user = authenticate(services.db, *USERS["admin"])
    token, info = create_session(services.db, user, hours=2)
    app.state.fuzz_headers = {
        "cookie": f"{SESSION_COOKIE}={token}",
        "X-CSRF-Token": info.csrf_token,
    }
    return app


def designed_unavailable(response) -> bool:
    """503 with a Japanese explanation: a part (bot, console) is not running in this test.

    An unhandled exception gives a bare 500 instead, so real crashes still fail.
    """
    if response.status_code != 503:
        return False
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, str) and any("\u3040" <= ch <= "\u30ff" for ch in detail)


def operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        yield result.ok()


def test_schema_is_served_and_documents_the_api(admin_app):
    from fastapi.testclient import TestClient

    spec = TestClient(admin_app).get("/openapi.json").json()
    assert {"/api/faq/entries", "/api/faq/try", "/api/faq/import", "/healthz"} <= set(spec["paths"])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(admin_app, mode):
    """Each operation in turn; the schema is read from the running app (no plugin magic)."""
    headers = dict(admin_app.state.fuzz_headers)
    failures: list[str] = []
    statuses: list[int] = []
    tested = 0
    for operation in operations(admin_app):
        tested += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            if designed_unavailable(response):
                return
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters)
    assert tested >= 20
    # logged in for real: the positive cases reach the handlers, not the login check
    assert statuses.count(401) == 0
    if mode is GenerationMode.POSITIVE:
        assert sum(200 <= code < 300 for code in statuses) >= 20
    assert not failures, "\n".join(failures[:20])
