"""A call node's test phone, offered to the web node over the cluster's internal HTTP.

On a scaled-out service operators open the test phone (テスト電話) on the web node, which
has no bot. The web node relays the browser's SDP offer here; the call runs on this
node's switchboard like any WebRTC call, the browser's audio comes to this node directly,
and the page follows the call's events through MQTT on the web node. Behind
``NodeTokenGuard`` (dashboards/routes/node_console.py), like the console.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from pydantic import Field

from dashboards.routes.phone import PhoneAnswer, PhoneOffer, webrtc_endpoint
from dashboards.services import Services, get_services

log = logging.getLogger(__name__)
router = APIRouter()

ServicesDep = Annotated[Services, Depends(get_services)]
# Why a call was refused (telephony.webrtc_endpoint.Refusal) -> the status the web node gets.
REFUSAL_STATUS = {"unavailable": 503, "stopping": 503, "owner_busy": 429, "full": 429}


class RelayedPhoneOffer(PhoneOffer):
    """A browser's offer, relayed by the web node with whose call it is."""

    owner: str = Field(min_length=1, max_length=64)
    caller: str = Field(min_length=1, max_length=128)


@router.post("/internal/phone/offer", response_model=PhoneAnswer)
async def node_phone_offer(offer: RelayedPhoneOffer, services: ServicesDep) -> PhoneAnswer:
    """Start a test-phone call here: the SDP answer and the call's id; a refusal carries
    its reason (``detail.reason``, as ``telephony.webrtc_endpoint.Refusal``)."""
    from telephony.webrtc_endpoint import CallRefused

    try:
        call_id, answer = await webrtc_endpoint(services).accept(
            offer.sdp, offer.type, owner=offer.owner, caller=offer.caller
        )
    except CallRefused as refused:
        reason = refused.reason.value
        raise HTTPException(
            status_code=REFUSAL_STATUS.get(reason, 400),
            detail={"reason": reason, "detail": refused.detail},
        ) from None
    log.info("test phone: call %s for %s from the web node", call_id, offer.owner)
    return PhoneAnswer(sdp=answer.sdp, type=answer.type, call_id=call_id)


@router.get("/internal/phone/calls")
async def node_phone_calls(services: ServicesDep) -> dict[str, list[str]]:
    """The test-phone calls this node holds now (the web node forgets the others)."""
    return {"calls": sorted(webrtc_endpoint(services).calls)}


@router.post("/internal/phone/{call_id}/hangup", status_code=204)
async def node_phone_hangup(call_id: str, services: ServicesDep) -> Response:
    """End a test-phone call (relayed by the web node, which checked whose it is)."""
    endpoint = webrtc_endpoint(services)
    if endpoint.call(call_id) is None:
        raise HTTPException(status_code=404, detail="この通話は見つかりません。")
    await endpoint.hang_up(call_id)
    return Response(status_code=204)
