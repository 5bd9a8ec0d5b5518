"""Telephony transports: SIP (pjsua2) and WebRTC (aiortc) calls into the conversation core."""
