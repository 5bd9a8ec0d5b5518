"""A node's bot follows the FAQ version published last in the shared database.

Real database (SQLite and PostgreSQL) and the real FAQ store; the bot's ``reload_faq`` is
replaced by a function that keeps what it was given, because rendering every answer with a
real voice is what the node tests (tests/test_node_roles.py) do end to end.
"""

from __future__ import annotations

import asyncio

import dbfixtures
import pytest

from dashboards.faq_follower import FaqFollower
from dashboards.faq_versions import FaqVersions, node_versions
from faq.store import Faq

postgres_url = dbfixtures.postgres_url
database_url = dbfixtures.database_url
db = dbfixtures.db

NEW_ANSWER = "証明書の手数料は、一通三百円です。窓口でお支払いください。"


def publish_new_fee(versions: FaqVersions) -> None:
    entry = dict(versions.draft().get("cert.fee"))
    entry["answer"] = NEW_ANSWER
    versions.save_entry(entry, "operator", entry_id="cert.fee")
    versions.publish("operator")


def test_follower_switches_once_per_new_version_and_records_it(db, tmp_path):
    versions = FaqVersions(db, data_dir=tmp_path)
    versions.ensure_initial_version()
    loaded: list[Faq] = []

    async def reload(faq: Faq) -> None:
        loaded.append(faq)

    async def scenario() -> list[int]:
        follower = FaqFollower(versions, reload, node="call-1", role="call")
        seen = [await follower.sync()]  # version 1: the bot's own FAQ, nothing to render
        publish_new_fee(versions)
        seen.append(await follower.sync())
        seen.append(await follower.sync())  # nothing newer: no second reload
        return seen

    assert asyncio.run(scenario()) == [1, 2, 2]
    assert len(loaded) == 1
    assert loaded[0].get("cert.fee").answer == NEW_ANSWER
    [row] = node_versions(db)
    assert (row["node"], row["role"], row["version"]) == ("call-1", "call", 2)


def test_a_failed_switch_is_retried_at_the_next_check(db, tmp_path):
    """Rendering the new answers fails once (say the disk is full): the node keeps speaking
    the version it had, records that one, and switches at the next check."""
    versions = FaqVersions(db, data_dir=tmp_path)
    versions.ensure_initial_version()
    attempts: list[int] = []

    async def reload(faq: Faq) -> None:
        attempts.append(len(faq))
        if len(attempts) == 1:
            raise OSError("no space left on device")

    async def scenario() -> FaqFollower:
        follower = FaqFollower(versions, reload, node="call-1", role="call")
        await follower.sync()
        publish_new_fee(versions)
        with pytest.raises(OSError):
            await follower.sync()
        assert follower.current == 1
        assert await follower.sync() == 2
        return follower

    follower = asyncio.run(scenario())
    assert len(attempts) == 2 and follower.current == 2
    assert [r["version"] for r in node_versions(db)] == [2]


def test_polling_picks_up_a_version_published_elsewhere(db, tmp_path):
    """The background poll, as a call node runs it: another node publishes, this one
    switches within a poll or two without being told."""
    versions = FaqVersions(db, data_dir=tmp_path)
    versions.ensure_initial_version()
    switched = asyncio.Event()

    async def reload(_faq: Faq) -> None:
        switched.set()

    async def scenario() -> int:
        follower = FaqFollower(versions, reload, node="call-2", role="call", poll_s=0.1)
        await follower.sync()
        follower.start()
        try:
            other = FaqVersions(db, data_dir=tmp_path / "web")  # the web node's store
            await asyncio.to_thread(publish_new_fee, other)
            await asyncio.wait_for(switched.wait(), timeout=30)
            return follower.current
        finally:
            follower.stop()

    assert asyncio.run(scenario()) == 2
