"""The SIP message handling the dispatcher relies on: parsing, header edits, Via, URIs."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.sip_message import (
    SipParseError,
    parse_datagram,
    parse_uri,
    parse_via,
    replace_uri_hostport,
    response_to,
)

INVITE = (
    b"INVITE sip:taxbot@10.0.0.20:5060 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-a;rport, "
    b"SIP/2.0/TCP 10.0.0.9;branch=z9hG4bK-b\r\n"
    b'f: "Taro" <sip:0312345678@10.0.0.5>;tag=abc\r\n'
    b"t: <sip:taxbot@10.0.0.20>\r\n"
    b"i: call-1@10.0.0.5\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Record-Route: <sip:10.0.0.5;lr>,\r\n <sip:10.0.0.9;lr>\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"v=0\r\nextra"
)


def test_parse_keeps_order_understands_compact_forms_and_splits_lists():
    """Compact header names, a folded line and comma-joined Via/Record-Route values are
    read as separate values; the body is cut at Content-Length; serialising writes a
    correct Content-Length again."""
    message = parse_datagram(INVITE)
    assert message.is_request and message.method == "INVITE"
    assert message.call_id == "call-1@10.0.0.5"
    assert message.to_tag is None
    assert len(message.get_all("via")) == 2
    assert message.get_all("record-route") == ["<sip:10.0.0.5;lr>", "<sip:10.0.0.9;lr>"]
    assert message.body == b"v=0\r\n"
    message.prepend("Via", "SIP/2.0/UDP 10.0.0.20:5060;branch=z9hG4bK-c")
    again = parse_datagram(message.to_bytes())
    assert [parse_via(v).host for v in again.get_all("via")] == [
        "10.0.0.20",
        "10.0.0.5",
        "10.0.0.9",
    ]
    assert again.get("content-length") == "5" and again.body == b"v=0\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n",  # no Call-ID, CSeq, From, To
        b"HELLO WORLD\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\ni: 1\r\nCSeq: 1 INVITE\r\nf: a\r\nt: b"
        b"\r\nl: 99\r\n\r\nshort",  # body shorter than Content-Length
        np.random.default_rng(3).integers(0, 256, 1400, dtype=np.uint8).tobytes(),
    ],
)
def test_garbage_is_not_a_message(data):
    with pytest.raises(SipParseError):
        parse_datagram(data)


def test_via_reply_address_follows_received_and_rport():
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-a;rport")
    assert via.reply_address() == ("10.0.0.5", 5070)
    via.set_param("received", "192.0.2.7")
    via.set_param("rport", "40123")
    assert via.reply_address() == ("192.0.2.7", 40123)
    assert str(via) == "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-a;rport=40123;received=192.0.2.7"
    assert parse_via("SIP/2.0/TCP [2001:db8::1];branch=x").reply_address() == ("2001:db8::1", 5060)


def test_uris_and_contact_rewriting():
    uri = parse_uri("sip:0312345678@10.0.0.5:5070;transport=tcp;lr")
    assert (uri.host, uri.port, uri.transport, uri.lr) == ("10.0.0.5", 5070, "TCP", True)
    assert parse_uri("sip:[2001:db8::1]:5062").port == 5062
    contact = '"Bot" <sip:taxbot@127.0.0.1:40001;ob>;expires=60'
    assert replace_uri_hostport(contact, "10.0.0.20", 5060) == (
        '"Bot" <sip:taxbot@10.0.0.20:5060;ob>;expires=60'
    )


def test_generated_response_echoes_the_transaction():
    request = parse_datagram(INVITE)
    response = parse_datagram(response_to(request, 403, "Forbidden", "t1").to_bytes())
    assert response.start_line == "SIP/2.0 403 Forbidden"
    assert response.get_all("via") == request.get_all("via")
    assert response.to_tag == "t1" and response.call_id == request.call_id
    assert response.get("cseq") == "7 INVITE" and response.method == "INVITE"


def test_the_dialog_tag_is_never_one_inside_the_uri():
    """Calls are keyed by Call-ID and From tag: a tag inside <...> must not be taken for it."""
    from telephony.sip_message import header_tag

    assert header_tag('"x" <sip:a@b;tag=uri>;tag=dialog') == "dialog"
    assert header_tag("<sip:a@b;tag=uri>") is None
    assert header_tag(None) is None
