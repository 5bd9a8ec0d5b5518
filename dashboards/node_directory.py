"""Where each call node's staff console can be reached, kept in the shared database.

A call node writes its own row when it starts (and removes it when it stops); the web
node reads the rows of call nodes that are alive, judged by the check-in every bot node
makes for its FAQ version (``node_faq_versions.seen_at``, every few seconds). A node
that died keeps its row but drops out of the list once it has been silent for
``ALIVE_WITHIN_S``, and comes back when it starts again under the same name.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from dashboards.db import Base, Database
from dashboards.faq_versions import NodeFaqVersion, utcnow

ALIVE_WITHIN_S = 30.0  # a call node checks in every 3 s; ten missed check-ins: gone


class NodeAddress(Base):
    """One call node's internal HTTP address (its staff console for the web node)."""

    __tablename__ = "node_addresses"

    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    console_url: Mapped[str] = mapped_column(String(512))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def advertise(db: Database, node: str, console_url: str) -> None:
    """Note that ``node``'s console answers at ``console_url`` (an upsert of its row)."""
    with db.session() as s:
        row = s.get(NodeAddress, node)
        if row is None:
            s.add(NodeAddress(node=node, console_url=console_url, updated_at=utcnow()))
        else:
            row.console_url, row.updated_at = console_url, utcnow()


def withdraw(db: Database, node: str) -> None:
    """``node`` stops: its console is no longer offered to the web node."""
    with db.session() as s:
        s.execute(delete(NodeAddress).where(NodeAddress.node == node))


def live_consoles(db: Database, alive_within_s: float = ALIVE_WITHIN_S) -> dict[str, str]:
    """Console URL by node name, for call nodes that checked in within ``alive_within_s``."""
    since = utcnow() - dt.timedelta(seconds=alive_within_s)
    with db.session() as s:
        rows = s.execute(
            select(NodeAddress.node, NodeAddress.console_url)
            .join(NodeFaqVersion, NodeFaqVersion.node == NodeAddress.node)
            .where(NodeFaqVersion.seen_at >= since)
            .order_by(NodeAddress.node)
        ).all()
    return {node: url for node, url in rows}
