"""Where the web node finds the call nodes' consoles: signed rows of live nodes only.

Real database (SQLite and PostgreSQL). A row counts only while its node checks in (its
FAQ version row) and only if it is signed with the cluster secret: anything else with
access to the database cannot point the web node, and the secret it sends, elsewhere.
"""

from __future__ import annotations

import datetime as dt

import dbfixtures
import pytest
from sqlalchemy import update

from dashboards.faq_versions import NodeFaqVersion, record_node_version
from dashboards.node_directory import NodeAddress, advertise, live_consoles, withdraw

postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

SECRET = "directory-test-secret-0123456789"


def test_a_node_is_listed_while_it_checks_in_and_until_it_withdraws(db):
    advertise(db, "call-a", "http://10.0.0.21:8080", SECRET)
    assert live_consoles(db, SECRET) == {}  # never checked in: not alive
    record_node_version(db, "call-a", "call", 1)
    assert live_consoles(db, SECRET) == {"call-a": "http://10.0.0.21:8080"}
    with db.session() as s:  # silent for a minute: gone
        s.execute(
            update(NodeFaqVersion).values(
                seen_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)
            )
        )
    assert live_consoles(db, SECRET) == {}
    record_node_version(db, "call-a", "call", 1)
    advertise(db, "call-a", "http://10.0.0.31:8080", SECRET)  # started elsewhere
    assert live_consoles(db, SECRET) == {"call-a": "http://10.0.0.31:8080"}
    withdraw(db, "call-a")
    assert live_consoles(db, SECRET) == {}


def test_a_row_not_signed_with_the_secret_is_not_followed(db):
    record_node_version(db, "call-a", "call", 1)
    record_node_version(db, "call-b", "call", 1)
    advertise(db, "call-a", "http://10.0.0.21:8080", SECRET)
    advertise(db, "call-b", "http://10.0.0.22:8080", "another-secret-0123456789")
    with db.session() as s:  # someone with database access redirects call-a
        s.execute(
            update(NodeAddress)
            .where(NodeAddress.node == "call-a")
            .values(console_url="http://attacker.example:80")
        )
    assert live_consoles(db, SECRET) == {}
    with db.session() as s:
        s.execute(update(NodeAddress).values(signature=None))
    assert live_consoles(db, SECRET) == {}


@pytest.mark.parametrize(
    "url", ["ftp://10.0.0.21", "http://10.0.0.21:8080/x", "http://10.0.0.21/?", "http://a b"]
)
def test_only_a_plain_http_origin_is_advertised(db, url):
    with pytest.raises(ValueError):
        advertise(db, "call-a", url, SECRET)
