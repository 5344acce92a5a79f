"""Events API payload builders: the bodies Slack sends for mentions, messages, reactions and commands."""

from __future__ import annotations

import time
import uuid
from typing import Any

from .records import DEFAULT_APP_ID, DEFAULT_BOT_ID, DEFAULT_BOT_USER_ID, DEFAULT_TEAM_ID, _event_counter, _next_event_id, next_ts


# --------------------------------------------------------------------------------------
# Payload builders (Events API shapes)
# --------------------------------------------------------------------------------------


def event_callback(
    team_id: str,
    event: dict[str, Any],
    event_id: str | None = None,
    api_app_id: str = DEFAULT_APP_ID,
    *,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    event_time: int | None = None,
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, Any]:
    """Wrap an event the way the Events API delivers it (HTTP body or events_api payload)."""
    channel = event.get("channel") or (event.get("item") or {}).get("channel") or ""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        **({"enterprise_id": enterprise_id} if enterprise_id else {}),
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or _next_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": None if is_enterprise_install else team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": is_enterprise_install,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{event.get('type', 'event')}-{team_id}-{channel}",
    }


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


def _user_message(
    event_type: str,
    channel: str,
    user: str,
    text: str,
    ts: str | None,
    thread_ts: str | None,
    team: str,
    channel_type: str | None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "type": event_type,
        "user": user,
        "text": text,
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "team": team,
        "blocks": _rich_text(text),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    if channel_type is not None:
        event["channel_type"] = channel_type
    if files is not None:
        # A message that shares files: subtype file_share on message events (app_mention has no subtype), the
        # file objects in `files`, `upload` and `display_as_bot` as Slack sends them.
        event.update(files=files, upload=True, display_as_bot=False)
        if event_type == "message":
            event["subtype"] = "file_share"
        if not text:
            event["blocks"] = []
    return event


def app_mention(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An app_mention event; ``text`` should contain "<@UBOT>" as Slack's does. ``files``: file objects
    (FakeSlack.add_file) shared with the mention."""
    return _user_message("app_mention", channel, user, text, ts, thread_ts, team, None, files)


def channel_message(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    channel_type: str = "channel",
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A plain message.channels event (use channel_type "group" for private channels); with ``files``, a
    file_share message."""
    return _user_message("message", channel, user, text, ts, thread_ts, team, channel_type, files)


def dm_message(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message.im event: a direct message to the bot (channel ids start with "D"); with ``files``, a
    file_share message."""
    return _user_message("message", channel, user, text, ts, thread_ts, team, "im", files)


def bot_message(
    channel: str,
    text: str,
    ts: str | None = None,
    *,
    bot_id: str = DEFAULT_BOT_ID,
    user: str | None = DEFAULT_BOT_USER_ID,
    app_id: str = DEFAULT_APP_ID,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    legacy: bool = False,
) -> dict[str, Any]:
    """A message posted by an app, as Slack echoes it back (by default: this bot's own).

    Apps posting with a bot token produce user + bot_id and no subtype; ``legacy=True``
    gives the older subtype "bot_message" form (webhooks, classic bots) without a user.
    """
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": ts,
        "bot_id": bot_id,
        "app_id": app_id,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if legacy:
        event["subtype"] = "bot_message"
        event["username"] = "bot"
    elif user is not None:
        event["user"] = user
        event["bot_profile"] = {"id": bot_id, "app_id": app_id, "name": "bot", "deleted": False}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_changed(
    channel: str,
    ts: str,
    text: str,
    *,
    user: str,
    previous_text: str = "",
    thread_ts: str | None = None,
    channel_type: str = "channel",
    bot_id: str | None = None,
) -> dict[str, Any]:
    """A message_changed event for the message at ``ts`` (streaming edits echo like this)."""
    event_ts = next_ts()
    message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts,
                               "edited": {"user": user, "ts": event_ts}}
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    for m in (message, previous):
        if thread_ts is not None:
            m["thread_ts"] = thread_ts
        if bot_id is not None:
            m["bot_id"] = bot_id
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "message": message,
        "previous_message": previous,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def message_deleted(
    channel: str,
    ts: str,
    *,
    user: str = "U1",
    previous_text: str = "",
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A message_deleted event for the message at ``ts``."""
    event_ts = next_ts()
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    if thread_ts is not None:
        previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": ts,
        "previous_message": previous,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def reaction_added(user: str, reaction: str, channel: str, ts: str, item_user: str) -> dict[str, Any]:
    """A reaction_added event on the message at (channel, ts) written by ``item_user``."""
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": next_ts(),
    }


def app_uninstalled() -> dict[str, Any]:
    """Sent once when the app is removed from a workspace; its tokens stop working."""
    return {"type": "app_uninstalled", "event_ts": next_ts()}


def tokens_revoked(bot_ids: list[str], oauth_ids: list[str] | None = None) -> dict[str, Any]:
    """tokens_revoked: ``bot_ids`` / ``oauth_ids`` are the user ids whose tokens were revoked."""
    return {"type": "tokens_revoked", "tokens": {"oauth": list(oauth_ids or []), "bot": list(bot_ids)},
            "event_ts": next_ts()}


def slash_command_form(
    team_id: str,
    user_id: str,
    channel_id: str,
    text: str,
    command: str = "/chatbot",
    response_url: str = "https://hooks.slack.com/commands/T1/1/fake",
    *,
    api_app_id: str = DEFAULT_APP_ID,
) -> dict[str, str]:
    """The fields of a slash command request (form-encoded over HTTP, JSON in Socket Mode)."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{next(_event_counter)}.{uuid.uuid4().hex[:12]}",
    }


# --------------------------------------------------------------------------------------
# AI-app events and interactive payloads
# --------------------------------------------------------------------------------------


def assistant_thread_started(channel: str, thread_ts: str, user: str, viewed_channel: str | None = None,
                             team: str = DEFAULT_TEAM_ID) -> dict[str, Any]:
    """assistant_thread_started: the person opened the assistant panel; ``viewed_channel`` is the channel beside it."""
    context: dict[str, Any] = {"team_id": team, "enterprise_id": None}
    if viewed_channel is not None:
        context["channel_id"] = viewed_channel
    return {"type": "assistant_thread_started",
            "assistant_thread": {"user_id": user, "context": context, "channel_id": channel, "thread_ts": thread_ts},
            "event_ts": next_ts()}


def assistant_thread_context_changed(channel: str, thread_ts: str, user: str, viewed_channel: str,
                                     team: str = DEFAULT_TEAM_ID) -> dict[str, Any]:
    event = assistant_thread_started(channel, thread_ts, user, viewed_channel, team)
    event["type"] = "assistant_thread_context_changed"
    return event


def app_home_opened(user: str, channel: str = "D0HOME", tab: str = "home") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": next_ts()}


def _interactive_base(kind: str, team: str, user: str, api_app_id: str) -> dict[str, Any]:
    return {
        "type": kind,
        "token": "fake-verification-token",
        "api_app_id": api_app_id,
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "is_enterprise_install": False,
        "enterprise": None,
        "trigger_id": f"{next(_event_counter)}.{uuid.uuid4().hex[:12]}",
        "response_url": f"https://hooks.slack.com/app/{team}/{uuid.uuid4().hex[:8]}",
    }


def feedback_click(user: str, channel: str, message_ts: str, value: str, *, thread_ts: str | None = None,
                   team: str = DEFAULT_TEAM_ID, action_id: str = "chatbot_feedback",
                   api_app_id: str = DEFAULT_APP_ID) -> dict[str, Any]:
    """block_actions: a click on a feedback_buttons element in a context_actions block of a bot message."""
    payload = _interactive_base("block_actions", team, user, api_app_id)
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                 "is_ephemeral": False}
    if thread_ts is not None:
        container["thread_ts"] = thread_ts
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "user": DEFAULT_BOT_USER_ID, "bot_id": DEFAULT_BOT_ID}
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    payload.update(
        container=container,
        channel={"id": channel, "name": "general"},
        message=message,
        state={"values": {}},
        actions=[{"type": "feedback_buttons", "action_id": action_id, "block_id": uuid.uuid4().hex[:5],
                  "text": {"type": "plain_text", "text": "👍" if value == "positive" else "👎", "emoji": True},
                  "value": value, "action_ts": next_ts()}],
    )
    return payload


def message_shortcut(callback_id: str, user: str, channel: str, message: dict[str, Any], *,
                     team: str = DEFAULT_TEAM_ID, api_app_id: str = DEFAULT_APP_ID) -> dict[str, Any]:
    """message_action: a message shortcut used on ``message`` (a Slack message object: ts, user, text, thread_ts)."""
    payload = _interactive_base("message_action", team, user, api_app_id)
    payload.update(
        callback_id=callback_id,
        action_ts=next_ts(),
        message_ts=message["ts"],
        channel={"id": channel, "name": "general"},
        message={"type": "message", **message},
    )
    return payload
