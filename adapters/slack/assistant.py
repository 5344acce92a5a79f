"""Slack's assistant panel: suggested prompts when a thread starts, its title, and the channel the person views.

An assistant thread is a thread in the person's DM with the app (Bolt tells them apart the same way). Its
questions are answered like any DM, with the thinking status and streaming; this module adds what the panel has
on top, and reads the viewed channel only when the question asks about it and only if the bot is a member.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.engine import Engine
from chatbots.types import ConversationKey, Inbound

from .errors import report
from .events import PLATFORM, SlackMessage
from .users import UserDirectory

log = logging.getLogger(__name__)

PROMPTS_TITLE = "How can I help?"
TITLE_LIMIT = 60
CHANNEL_MESSAGES = 50
"""Messages of the viewed channel read for a question about it: its recent discussion, bounded."""
CHANNEL_CHARS = 20_000
_ASKS_ABOUT_CHANNEL = re.compile(r"\b(?:this|the|current|that) channel\b", re.IGNORECASE)
NOT_A_MEMBER = "I can only read channels I'm a member of: invite me to <#{channel}> (`/invite @{name}`) and ask again."
SWITCHED_OFF = "I'm not used in <#{channel}> (an admin decides where I answer), so I won't read it."
NO_CHANNEL = "I don't know which channel you mean: open the channel beside this panel and ask again."


def is_assistant_thread(event: dict[str, Any]) -> bool:
    return event.get("channel_type") == "im" and isinstance(event.get("thread_ts"), str)


def _thread(body: dict[str, Any]) -> tuple[str, str, str | None, str | None] | None:
    """(DM channel, thread ts, viewed channel, user) of an assistant_thread_* event; None when malformed."""
    event = body.get("event")
    thread = event.get("assistant_thread") if isinstance(event, dict) else None
    if not isinstance(thread, dict):
        return None
    channel, ts = thread.get("channel_id"), thread.get("thread_ts")
    if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
        return None
    context = thread.get("context") if isinstance(thread.get("context"), dict) else {}
    viewed = context.get("channel_id")  # type: ignore[union-attr]
    user = thread.get("user_id")
    return channel, ts, viewed if isinstance(viewed, str) and viewed else None, user if isinstance(user, str) else None


class AssistantPanel:
    def __init__(self, client: AsyncWebClient, engine: Engine, users: UserDirectory, bot_name: str = "chatbot") -> None:
        self.client = client
        self.engine = engine
        self.users = users
        self.bot_name = bot_name

    async def thread_started(self, body: dict[str, Any], client: AsyncWebClient | None = None) -> bool:
        """Offer the workspace's suggested prompts in the new thread, and remember the channel being viewed.
        client: the workspace's own (OAuth mode), else the panel's."""
        client = client or self.client
        found, team = _thread(body), body.get("team_id")
        if found is None or not isinstance(team, str) or not team:
            return False
        channel, ts, viewed, _ = found
        await self.engine.remember_viewing(PLATFORM, team, channel, viewed)
        prompts = await self.engine.suggested_prompts(PLATFORM, team)
        try:
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=ts, title=PROMPTS_TITLE,
                prompts=[{"title": p.title, "message": p.message} for p in prompts],
            )
        except SlackApiError as error:
            report(self.engine.failures, "assistant.threads.setSuggestedPrompts", error, channel)
        return True

    async def context_changed(self, body: dict[str, Any]) -> bool:
        found, team = _thread(body), body.get("team_id")
        if found is None or not isinstance(team, str) or not team:
            return False
        channel, _, viewed, _ = found
        await self.engine.remember_viewing(PLATFORM, team, channel, viewed)
        return True

    async def before_answer(self, message: SlackMessage, first: bool,
                            client: AsyncWebClient | None = None) -> tuple[Inbound | None, str | None]:
        """Title a new thread after its first question; add the viewed channel's messages when the question asks
        about it. Returns the question to answer, or (None, a note to post instead)."""
        client = client or self.client
        inbound = message.inbound
        key = inbound.key
        if first and inbound.text.strip():
            title = " ".join(inbound.text.split())
            title = title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"
            try:
                await client.assistant_threads_setTitle(channel_id=key.channel, thread_ts=key.thread, title=title)
            except SlackApiError as error:
                report(self.engine.failures, "assistant.threads.setTitle", error, key.channel)
        if not _ASKS_ABOUT_CHANNEL.search(inbound.text[:4_000]):
            return inbound, None
        viewed = await self.engine.viewing(PLATFORM, key.workspace, key.channel)
        if not viewed or viewed == key.channel:
            return None, NO_CHANNEL
        if not await self.engine.answers(ConversationKey(PLATFORM, key.workspace, viewed, viewed), inbound.author_id):
            return None, SWITCHED_OFF.format(channel=viewed)  # a channel the bot is kept out of is not read either
        try:
            info = await client.conversations_info(channel=viewed)
            if not (info.get("channel") or {}).get("is_member"):
                return None, NOT_A_MEMBER.format(channel=viewed, name=self.bot_name)
            history = await client.conversations_history(channel=viewed, limit=CHANNEL_MESSAGES)
        except SlackApiError as error:
            report(self.engine.failures, "conversations.history", error, viewed)
            return None, NOT_A_MEMBER.format(channel=viewed, name=self.bot_name)
        lines: list[str] = []
        used = 0
        for item in history.get("messages") or []:  # newest first
            text, user = item.get("text"), item.get("user")
            if not isinstance(text, str) or not text.strip() or item.get("subtype"):
                continue
            name = (await self.users.get(key.workspace, user, client)).name if isinstance(user, str) and user \
                else "someone"
            line = f"{name}: {' '.join(html.unescape(text).split())}"
            if used + len(line) > CHANNEL_CHARS:
                break
            lines.append(line)
            used += len(line) + 1
        shown = "\n".join(reversed(lines)) or "(no messages)"
        text = f"{inbound.text}\n\nThe recent messages of the channel I am looking at, oldest first:\n{shown}"
        return Inbound(key, inbound.message_id, inbound.author_id, inbound.author_name, text, inbound.addressed,
                       inbound.files), None
