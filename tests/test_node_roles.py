"""Node roles: a web node and a call node on one PostgreSQL database, as two machines.

The call node (``voicebot serve --role call``) loads the bot and answers SIP, but over HTTP
serves only the health probes; the web node (``--role web``) serves the operator pages
without loading Whisper or a voice and takes no calls. An FAQ version published through
the web node's API reaches the call node through the database: it renders the new answers
and switches within a few seconds, and the web node's version page shows which version
each node speaks.
"""

from __future__ import annotations

import dbfixtures
import httpx
from nodes import Node, wait_until
from test_serve import sip_options

from dashboards.accounts import authenticate, create_session
from dashboards.db import Database
from dashboards.faq_versions import node_versions
from dashboards.security import SESSION_COOKIE

postgres_url = dbfixtures.postgres_url

NEW_ANSWER = "証明書の手数料は、一通三百円です。窓口でお支払いください。"
# What the FAQ API takes back of an entry it gave (the editable fields).
FAQ_FIELDS = ("id", "category", "title", "action", "questions", "keywords", "followup", "tags")


def operator_client(db: Database, base_url: str) -> httpx.Client:
    """An admin session made in the shared database, as a login on the web node would."""
    user = authenticate(db, "admin", "node-test-password-1")
    assert user is not None
    token, info = create_session(db, user, hours=1)
    client = httpx.Client(base_url=base_url, timeout=30)
    client.cookies.set(SESSION_COOKIE, token)
    client.headers.update({"X-CSRF-Token": info.csrf_token, "accept": "application/json"})
    return client


def publish_fee_answer(api: httpx.Client) -> int:
    """Change cert.fee's answer to ``NEW_ANSWER`` and publish, as an operator on the web
    node's FAQ API does; the new version's number."""
    entry = api.get("/api/faq/entries/cert.fee").json()
    edited = {k: entry[k] for k in FAQ_FIELDS if k in entry}
    edited.update(answer=NEW_ANSWER, expected_hash=entry["hash"])
    assert api.put("/api/faq/entries/cert.fee", json=edited).status_code == 200
    published = api.post("/api/faq/publish", json={"comment": "手数料の案内を変更"})
    assert published.status_code == 200, published.text
    return published.json()["version"]["number"]


def test_web_node_publishes_and_the_call_node_switches(tmp_path, postgres_url):
    web = Node(tmp_path, "web-1", "web", postgres_url)
    call = Node(tmp_path, "call-1", "call", postgres_url, rtp_base=31000)
    db = Database(postgres_url)
    try:
        web.ready()
        call.ready()
        # The web node: operator pages, ready while the database answers, no bot.
        assert httpx.get(f"{web.web}/login", timeout=10).status_code == 200
        ready = httpx.get(f"{web.web}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert httpx.get(f"{web.web}/healthz", timeout=10).json()["bot_loaded"] is False
        assert "speech cache" not in web.text() and "SIP" not in web.text()
        # The call node: probes and SIP only.
        assert httpx.get(f"{call.web}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{call.web}/livez", timeout=10).status_code == 200
        assert httpx.get(f"{call.web}/metrics", timeout=10).status_code == 200
        for page in ("/login", "/faq", "/staff", "/api/faq/versions", "/docs"):
            assert httpx.get(f"{call.web}{page}", timeout=10).status_code == 404, page
        assert sip_options(call.sip_port) == "SIP/2.0 200 OK"
        assert sip_options(call.sip_port) == "SIP/2.0 200 OK"
        assert [(n["node"], n["version"]) for n in node_versions(db)] == [("call-1", 1)]

        with operator_client(db, web.web) as api:
            assert publish_fee_answer(api) == 2

            call.wait_for(r"node call-1 speaks FAQ version 2 now", timeout=120)
            wait_until(
                lambda: [(n["node"], n["version"]) for n in node_versions(db)] == [("call-1", 2)],
                30,
                "the call node's version recorded",
            )
            html = {"accept": "text/html"}
            for path in ("/", "/faq", "/monitor", "/reports", "/unanswered", "/staff", "/phone"):
                assert api.get(path, headers=html).status_code == 200, path  # no bot needed
            page = api.get("/faq/versions", headers=html)
            assert page.status_code == 200
            assert "各ノードが使用中の版" in page.text and "call-1" in page.text
        assert "FAQ reloaded" in call.text()
        assert "speaks FAQ version" not in web.text()  # the web node has no bot to switch
    finally:
        codes = {node.name: node.stop() for node in (call, web)}
        db.dispose()
    assert codes == {"call-1": 0, "web-1": 0}, (call.text(), web.text())
    for node in (call, web):
        assert "Traceback" not in node.text(), node.text()
