"""Socket Mode: the websocket the bot opens, envelopes sent to it and the acks it returns."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import aiohttp
from aiohttp import web


class SocketMode:
    """Serves the Socket Mode websocket and pushes events and slash commands to the bot."""


    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": self.socket_connections,
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._changed()
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(frame.data)
                    if isinstance(data, dict) and data.get("envelope_id"):
                        self.acks[str(data["envelope_id"])] = data
                        self._changed()
        finally:
            self._sockets.remove(ws)
            self._changed()
        return ws

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        retry_reason: str = "",
        *,
        accepts_response_payload: bool | None = None,
        timeout: float = 5.0,
        connection: int = -1,
    ) -> str:
        """Push one envelope to an open connection (the newest unless told which, in opening order); return its id.

        ``envelope_type`` is "events_api", "slash_commands" or "interactive". Only
        events_api envelopes carry retry_attempt / retry_reason, as in Slack; Bolt maps them
        to X-Slack-Retry-Num / X-Slack-Retry-Reason request headers (0 included).
        """
        await self.wait_for(lambda: self.socket_connections > 0, timeout, "a Socket Mode connection")
        envelope: dict[str, Any] = {
            "envelope_id": str(uuid.uuid4()),
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": (
                envelope_type != "events_api" if accepts_response_payload is None else accepts_response_payload
            ),
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        ws = [s for s in self._sockets if not s.closed][connection]
        self.envelopes.append(envelope)
        await ws.send_json(envelope)
        return envelope["envelope_id"]

    async def socket_send_event(
        self, event_callback_body: dict[str, Any], retry_attempt: int = 0, retry_reason: str = "", connection: int = -1
    ) -> str:
        """Push an Events API body (see ``event_callback``) as an events_api envelope (Slack spreads an app's
        events over its open connections: ``connection`` picks one, in opening order)."""
        self.record_event(event_callback_body)
        return await self.socket_send("events_api", event_callback_body, retry_attempt, retry_reason, connection=connection)

    async def socket_send_slash_command(self, form: dict[str, Any]) -> str:
        """Push a slash command (see ``slash_command_form``); in Socket Mode it arrives as JSON."""
        return await self.socket_send("slash_commands", dict(form))

    async def socket_send_interactive(self, payload: dict[str, Any]) -> str:
        """Push an interactive payload (block_actions, message_action, ...): in Socket Mode it arrives as JSON."""
        return await self.socket_send("interactive", dict(payload))

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """Wait for the app to ack ``envelope_id``; return the ack's payload (None if it had none)."""
        ack = await self.wait_for(lambda: self.acks.get(envelope_id), timeout, f"ack of envelope {envelope_id}")
        return ack.get("payload")

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's disconnect message; slack_sdk answers by opening a new connection."""
        for ws in [s for s in self._sockets if not s.closed]:
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})
