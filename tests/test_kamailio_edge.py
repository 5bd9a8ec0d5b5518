"""The SIP edge: Kamailio (deploy/kamailio/kamailio.cfg) in front of two call nodes.

Real processes throughout: two ``voicebot serve --role call`` nodes on one PostgreSQL
database, Kamailio started from the shipped configuration (only its site settings, the
address, the port, the node list and the PBX, are replaced), and sipp callers that send the INVITE
to Kamailio and the ACK and BYE along the route it recorded. The calls must be answered
and spread over both nodes (each call record carries the node that took it); with one
node stopped, every new call must go to the other: straight away, whether Kamailio's
OPTIONS probes have noticed yet or it fails over on the missing answer.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import dbfixtures
from kamailio_edge import Kamailio, needs_edge, options_answer, place_calls, wait_for_records
from nodes import Node, free_port

from dashboards.db import Database

postgres_url = dbfixtures.postgres_url

pytestmark = needs_edge


def test_kamailio_spreads_calls_over_call_nodes_and_fails_over(tmp_path, postgres_url):
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

        place_calls(edge, tmp_path, 4)
        calls = wait_for_records(db, 4)
        spread = Counter(c.node for c in calls)
        assert spread == {"call-a": 2, "call-b": 2}, spread  # round-robin over both nodes
        assert {c.outcome for c in calls} == {"hung_up"}  # the BYE followed the route

        code_b = nodes[1].stop()  # drains (503 to new calls) and exits
        assert code_b == 0, nodes[1].text()
        place_calls(edge, tmp_path, 3)
        after = wait_for_records(db, 7)
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
