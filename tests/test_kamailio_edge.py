"""The SIP edge: Kamailio (deploy/kamailio/kamailio.cfg) in front of two call nodes.

Real processes throughout: two ``voicebot serve --role call`` nodes on one PostgreSQL
database, Kamailio started from the shipped configuration (only its site settings, the
address, the port, the node list and the PBX, are replaced), and sipp callers that send the INVITE
to Kamailio and the ACK and BYE along the route it recorded. The calls must be answered
and go to the node with the fewest calls (each call record carries the node that took
it); with one node stopped, every new call must go to the other: straight away, whether
Kamailio's OPTIONS probes have noticed yet or it fails over on the missing answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace

import dbfixtures
from kamailio_edge import (
    Kamailio,
    needs_edge,
    options_answer,
    place_calls,
    sip_calls,
    wait_for_records,
)
from nodes import Node, free_port, wait_until

from dashboards.db import Database

postgres_url = dbfixtures.postgres_url

pytestmark = needs_edge


def test_kamailio_gives_calls_to_the_least_loaded_node_and_fails_over(tmp_path, postgres_url):
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    nodes = [
        Node(tmp_path, "call-a", "call", postgres_url, rtp_base=32000),
        Node(tmp_path, "call-b", "call", postgres_url, rtp_base=33000),
    ]
    db = Database(postgres_url)
    edge = None
    try:
        for node in nodes:
            node.ready()
        edge = Kamailio(tmp_path, nodes)
        edge.wait_listening()

        # Least load: while one caller talks on a node, new callers go to the other.
        long_call = threading.Thread(
            target=place_calls, args=(edge, long_dir, 1), kwargs={"hold_ms": 15_000}
        )
        long_call.start()
        try:
            [talking] = wait_until(lambda: sip_calls(db), 30, "the long call recorded")
            place_calls(edge, tmp_path, 3)
        finally:
            long_call.join()
        calls = wait_for_records(db, 4)
        busy = talking.node
        idle = next(n.name for n in nodes if n.name != busy)
        spread = Counter(c.node for c in calls if c.id != talking.id)
        assert spread == {idle: 3}, (busy, spread)  # round-robin would have used both
        assert {c.outcome for c in calls} == {"hung_up"}  # the BYEs followed the route
        # Every call's BYE took its load away again: one caller at a time now finds both
        # nodes at 0, and the tie goes to the same node each time (no rotation).
        place_calls(edge, tmp_path, 2)
        calls = sorted(wait_for_records(db, 6), key=lambda c: c.started_at)
        assert len({c.node for c in calls[4:]}) == 1, [c.node for c in calls]

        code_b = nodes[1].stop()  # drains (503 to new calls) and exits
        assert code_b == 0, nodes[1].text()
        place_calls(edge, tmp_path, 3)
        after = wait_for_records(db, 9)
        new = [c for c in after if c.id not in {c.id for c in calls}]
        assert [c.node for c in new] == ["call-a"] * 3, [(c.node, c.outcome) for c in new]
        assert {c.outcome for c in new} == {"hung_up"}
    finally:
        if edge is not None:
            edge.stop()
        codes = [node.stop() for node in nodes]
        db.dispose()
    assert codes == [0, 0], [node.text() for node in nodes]
    for node in nodes:
        assert "Traceback" not in node.text(), node.text()


def test_the_edge_relays_only_the_pbx_and_the_call_nodes(tmp_path):
    """A stranger's request (here from 127.0.0.2) is refused by the edge itself, before
    any call node is reached; the PBX (127.0.0.1 in the rendered config) is answered."""
    node = SimpleNamespace(name="call-1", sip_port=free_port())  # no node needs to run
    edge = Kamailio(tmp_path, [node])
    try:
        edge.wait_listening()
        assert options_answer(edge.port) == "SIP/2.0 200 OK"
        assert options_answer(edge.port, source="127.0.0.2") == "SIP/2.0 403 Forbidden"
    finally:
        edge.stop()
