"""A fake Slack for tests: Web API, Socket Mode and HTTP-mode helpers, all on 127.0.0.1.

Why a server and not mocks: the bot talks to Slack through the real ``slack_sdk`` and
``slack_bolt`` libraries, and most Slack bugs live in the wire details those libraries
handle (GET vs POST, form vs JSON bodies, 429 + Retry-After, envelope acks, signatures).
A loopback server lets tests run the shipping code paths unchanged and offline.

Wire shapes follow Slack's method reference and the python-slack-sdk sources. Where a
behaviour is known only from other people's measurements, the docstring says so.

Typical use::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0].text == "hi"

Modules: ``records`` (what tests read), ``state`` (world, lifecycle, waiting), ``web_api`` (the methods),
``socket_mode`` (the websocket), ``signing`` (HTTP-mode requests), ``payloads`` (event bodies), ``files`` (shared
files: file objects, downloads on the fake's own port, files.info).
"""

from __future__ import annotations

from .payloads import (
    app_home_opened,
    app_mention,
    assistant_thread_context_changed,
    assistant_thread_started,
    feedback_click,
    message_shortcut,
    app_uninstalled,
    bot_message,
    channel_message,
    dm_message,
    event_callback,
    message_changed,
    message_deleted,
    reaction_added,
    slash_command_form,
    tokens_revoked,
)
from .files import SlackFiles
from .oauth import BrowserInstall, InstallChoice, SlackOAuth, Workspace
from .records import Call, PostedMessage, next_ts
from .signing import post_signed, serve, sign_request
from .socket_mode import SocketMode
from .state import SlackState
from .web_api import WebApi

__all__ = [
    "BrowserInstall",
    "app_home_opened",
    "assistant_thread_context_changed",
    "assistant_thread_started",
    "feedback_click",
    "message_shortcut",
    "Call",
    "InstallChoice",
    "Workspace",
    "FakeSlack",
    "PostedMessage",
    "app_mention",
    "app_uninstalled",
    "bot_message",
    "channel_message",
    "dm_message",
    "event_callback",
    "message_changed",
    "message_deleted",
    "next_ts",
    "post_signed",
    "reaction_added",
    "serve",
    "sign_request",
    "slash_command_form",
    "tokens_revoked",
]


class FakeSlack(WebApi, SocketMode, SlackFiles, SlackOAuth, SlackState):
    """An aiohttp server speaking enough of Slack's Web API and Socket Mode for the bot.

    State is public so tests can read it directly: ``calls``, ``messages()``,
    ``ephemerals``, ``statuses``, ``reactions``, ``acks``, ``envelopes``, ``file_downloads``.
    """
