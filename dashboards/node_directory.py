"""Where each call node's staff console can be reached, kept in the shared database.

A call node writes its own row when it starts (and removes it when it stops), signed with
the cluster secret; the web node follows only rows whose signature holds and whose
address is a plain http(s) origin, so that a row written by anything else with access to
the database cannot make the web node send the secret elsewhere. The web
node reads the rows of call nodes that are alive, judged by the check-in every bot node
makes for its FAQ version (``node_faq_versions.seen_at``, every few seconds). A node
that died keeps its row but drops out of the list once it has been silent for
``ALIVE_WITHIN_S``, and comes back when it starts again under the same name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from dashboards.db import Base, Database
from dashboards.faq_versions import NodeFaqVersion, utcnow

ALIVE_WITHIN_S = 30.0  # a call node checks in every 3 s; ten missed check-ins: gone
ORIGIN = re.compile(r"https?://[^/?#\s]+")  # scheme, host and port; nothing after them


class NodeAddress(Base):
    """One call node's internal HTTP address (its staff console for the web node)."""

    __tablename__ = "node_addresses"

    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    console_url: Mapped[str] = mapped_column(String(512))
    signature: Mapped[str | None] = mapped_column(String(64))  # HMAC of node and URL
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def signature(secret: str, node: str, console_url: str) -> str:
    return hmac.new(secret.encode(), f"{node}\n{console_url}".encode(), hashlib.sha256).hexdigest()


def advertise(db: Database, node: str, console_url: str, secret: str) -> None:
    """Note that ``node``'s console answers at ``console_url`` (an upsert of its row,
    signed with the cluster secret)."""
    if not ORIGIN.fullmatch(console_url):
        raise ValueError(f"not an http(s) origin: {console_url!r}")
    signed = signature(secret, node, console_url)
    with db.session() as s:
        row = s.get(NodeAddress, node)
        if row is None:
            s.add(NodeAddress(node=node, console_url=console_url, signature=signed))
        else:
            row.console_url, row.signature, row.updated_at = console_url, signed, utcnow()


def withdraw(db: Database, node: str) -> None:
    """``node`` stops: its console is no longer offered to the web node."""
    with db.session() as s:
        s.execute(delete(NodeAddress).where(NodeAddress.node == node))


def live_consoles(
    db: Database, secret: str, alive_within_s: float = ALIVE_WITHIN_S
) -> dict[str, str]:
    """Console URL by node name, for call nodes that checked in within ``alive_within_s``
    and whose row is signed with ``secret``."""
    since = utcnow() - dt.timedelta(seconds=alive_within_s)
    with db.session() as s:
        rows = s.execute(
            select(NodeAddress.node, NodeAddress.console_url, NodeAddress.signature)
            .join(NodeFaqVersion, NodeFaqVersion.node == NodeAddress.node)
            .where(NodeFaqVersion.seen_at >= since)
            .order_by(NodeAddress.node)
        ).all()
    return {
        node: url
        for node, url, signed in rows
        if signed
        and hmac.compare_digest(signed, signature(secret, node, url))
        and ORIGIN.fullmatch(url)
    }
