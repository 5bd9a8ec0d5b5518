"""Every route of the app, enumerated from the app itself, refuses the wrong people.

Anonymous API calls get 401, anonymous page requests a redirect to the login page, and
a logged-in user without one of the route's roles gets 403. Routes are found by walking
the app's routes, so routers added later by other modules are covered automatically; a
route that declares no ``require_role`` must be on the short public list below.
"""

from __future__ import annotations

import re

import pytest
from browser import make_services
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient

from dashboards.accounts import ROLES, authenticate, create_session
from dashboards.app import create_app
from dashboards.security import SESSION_COOKIE

# Reachable without logging in, on purpose.
PUBLIC = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def route_roles(dependant) -> frozenset[str] | None:
    """Roles required by the route's require_role dependency (None: no login needed)."""
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
        stack.extend(dep.dependencies)
    return None


def all_routes(app):
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, (APIRoute, APIWebSocketRoute)):
            yield ctx.path, route


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture(scope="module")
def app_and_tokens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authz")
    services = make_services(tmp)
    app = create_app(services)
    tokens = {}
    from browser import USERS

    for role in ROLES:
        user = authenticate(services.db, *USERS[role])
        token, info = create_session(services.db, user, hours=1)
        tokens[role] = (token, info.csrf_token)
    with TestClient(app, base_url="http://testserver") as client:
        yield app, client, tokens


def http_cases(app):
    cases = []
    for path, route in all_routes(app):
        if isinstance(route, APIWebSocketRoute):
            continue
        for method in sorted(route.methods - SKIP_METHODS):
            cases.append((method, path, route_roles(route.dependant)))
    return cases


def test_routes_are_found_including_other_routers(app_and_tokens):
    app, _client, _tokens = app_and_tokens
    paths = {p for _m, p, _r in http_cases(app)}
    assert {"/api/faq/entries", "/api/faq/publish", "/api/users", "/api/audit", "/faq"} <= paths
    assert len(paths) >= 30


def test_only_the_public_routes_skip_login(app_and_tokens):
    app, _client, _tokens = app_and_tokens
    open_routes = {(m, p) for m, p, roles in http_cases(app) if roles is None}
    assert open_routes <= PUBLIC, f"routes without require_role: {sorted(open_routes - PUBLIC)}"
    for path, route in all_routes(app):
        if isinstance(route, APIWebSocketRoute):
            assert route_roles(route.dependant) is not None, f"websocket {path} needs a role"


def test_anonymous_requests_are_refused(app_and_tokens):
    app, client, _tokens = app_and_tokens
    failures = []
    for method, path, roles in http_cases(app):
        if roles is None:
            continue
        url = concrete(path)
        api = client.request(method, url, headers={"accept": "application/json"})
        if api.status_code != 401:
            failures.append(f"{method} {url} (API): {api.status_code}")
        if not path.startswith("/api/"):
            page = client.request(
                method, url, headers={"accept": "text/html"}, follow_redirects=False
            )
            if page.status_code != 303 or not page.headers["location"].startswith("/login?next="):
                failures.append(f"{method} {url} (page): {page.status_code}")
    assert not failures, "\n".join(failures)


def test_wrong_roles_are_refused(app_and_tokens):
    app, client, tokens = app_and_tokens
    failures, checked = [], 0
    for method, path, roles in http_cases(app):
        if roles is None:
            continue
        for role in sorted(set(ROLES) - roles):
            token, csrf = tokens[role]
            headers = {
                "accept": "application/json",
                "cookie": f"{SESSION_COOKIE}={token}",
                "X-CSRF-Token": csrf,
            }
            response = client.request(method, concrete(path), headers=headers)
            checked += 1
            if response.status_code != 403:
                failures.append(f"{method} {path} as {role}: {response.status_code}")
    assert not failures, "\n".join(failures)
    assert checked >= 20  # admin-only and editor-only routes exist
