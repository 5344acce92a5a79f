"""Slack's AI-app surfaces on the service: assistant panel events, feedback buttons, message shortcuts, App Home."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.commands import Caller, Commands
from chatbots.home import home_report
from chatbots.summaries import ASK_ABOUT_QUESTION, ThreadLine, context_of, summary_question
from chatbots.types import Addressed, ConversationKey, Inbound, Outcome, Reply

from ..service import ServiceBase
from ..tasks import TurnTasks
from .assistant import AssistantPanel
from .errors import report
from .events import PLATFORM
from .feedback import ACTION_ID, THANKS, read_click
from .home import home_view
from .mrkdwn import escape
from .reply import ContextOnly, SlackReply, SlackTarget, WorkspaceFeatures
from .shortcuts import ASK_ABOUT, SUMMARIZE, Shortcut, is_readable, line, read_shortcut, read_thread
from .users import UserDirectory

log = logging.getLogger(__name__)

UNREADABLE_THREAD = "I can't read that thread: invite me to the channel first (`/invite @{name}`), then try again."
EMPTY_THREAD = "That thread has no messages with text for me to summarize."
VOTE_NOT_RECORDED = "I couldn't record that vote: I no longer know that answer."


class AISurfaces(ServiceBase):
    """SlackService's handlers for what Slack offers AI apps beyond messages and commands. Every Web API call is
    made with the client Bolt hands the handler: the token of the workspace the request came from."""

    app: AsyncApp
    client: AsyncWebClient
    users: UserDirectory
    commands: Commands
    features: WorkspaceFeatures
    turns: TurnTasks
    update_interval: float
    panel: AssistantPanel

    def _add_ai_surfaces(self) -> None:
        self.panel = AssistantPanel(self.client, self.engine, self.users)
        self.app.event("assistant_thread_started")(self._on_assistant_started)
        self.app.event("assistant_thread_context_changed")(self._on_assistant_context)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.app.action(ACTION_ID)(self._on_feedback_click)
        self.app.shortcut(SUMMARIZE)(self._on_shortcut)
        self.app.shortcut(ASK_ABOUT)(self._on_shortcut)

    async def _on_assistant_started(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        started = await self.panel.thread_started(body, context.client)
        self._observe(Outcome.ASSISTANT_THREAD if started else Outcome.IGNORED)

    async def _on_assistant_context(self, body: dict[str, Any]) -> None:
        self._observe(Outcome.ASSISTANT_THREAD if await self.panel.context_changed(body) else Outcome.IGNORED)

    async def _is_admin(self, team: str, user: str, client: AsyncWebClient) -> bool:
        admin = (await self.users.get(team, user, client)).is_admin
        caller = Caller(ConversationKey(PLATFORM, team, "", ""), user, admin)
        return self.commands.is_admin(caller)

    async def _on_home_opened(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """Published afresh each time the tab opens, so it always shows today's numbers."""
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        assert isinstance(event, dict)
        team, user = body.get("team_id"), event.get("user")
        if event.get("tab") != "home" or not isinstance(team, str) or not team or not isinstance(user, str) or not user:
            return self._observe(Outcome.IGNORED)
        client = context.client
        report_ = await home_report(self.engine, PLATFORM, team, user, await self._is_admin(team, user, client))
        try:
            await client.views_publish(user_id=user, view=home_view(report_))
        except SlackApiError as error:
            report(self.engine.failures, "views.publish", error, user)
            return self._observe(Outcome.IGNORED)
        self._observe(Outcome.HOME)

    async def _on_feedback_click(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """A feedback button: the same vote as a thumbs reaction, thanked privately."""
        await ack()
        click = read_click(body)
        if click is None:
            return self._observe(Outcome.IGNORED)
        found = await self.engine.record_vote(PLATFORM, click.team, click.message_ts, click.user, click.vote)
        self._observe(Outcome.FEEDBACK if found else Outcome.IGNORED)
        try:
            await context.client.chat_postEphemeral(channel=click.channel, user=click.user, thread_ts=click.thread_ts,
                                                    text=THANKS[click.vote] if found else VOTE_NOT_RECORDED)
        except SlackApiError as error:
            report(self.engine.failures, "chat.postEphemeral", error, click.channel)

    async def _on_shortcut(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()  # within Slack's 3 seconds; the work goes on in its own task
        shortcut = read_shortcut(body)
        if shortcut is None or body.get("type") != "message_action":
            return self._observe(Outcome.IGNORED)
        client = context.client
        work = self._summarize(shortcut, client) if shortcut.callback_id == SUMMARIZE else self._ask_about(shortcut, client)
        self.turns.spawn(work)

    def _reply(self, shortcut: Shortcut, client: AsyncWebClient) -> SlackReply:
        target = SlackTarget(shortcut.team, shortcut.channel, shortcut.thread_ts, shortcut.user)
        return SlackReply(client, target, self.features, self.update_interval, self.engine.failures)

    async def _barred(self, shortcut: Shortcut, client: AsyncWebClient) -> bool:
        """Access rules come first: someone the bot does not answer in that channel gets the engine's usual note
        (as for a mention), and nothing of the thread is read, posted or kept for them."""
        key = ConversationKey(PLATFORM, shortcut.team, shortcut.channel, shortcut.thread_ts)
        if await self.engine.answers(key, shortcut.user):
            return False
        asker = await self.users.get(shortcut.team, shortcut.user, client)
        request = Inbound(key, f"shortcut:{shortcut.trigger}", shortcut.user, asker.name, shortcut.callback_id)
        await self._shortcut_turn(request, self._reply(shortcut, client))
        return True

    async def _summarize(self, shortcut: Shortcut, client: AsyncWebClient) -> None:
        """Read the whole thread from Slack, and answer a summary question through the engine (caps, moderation
        and the workspace's instructions apply as to any question), after a line saying who asked."""
        if await self._barred(shortcut, client):
            return
        try:
            messages = await read_thread(client, shortcut.channel, shortcut.thread_ts)
        except SlackApiError as error:
            report(self.engine.failures, "conversations.replies", error, shortcut.channel)
            return await self._tell(shortcut, UNREADABLE_THREAD.format(name=self.panel.bot_name), client)
        lines: list[ThreadLine] = []
        for message in messages:
            if is_readable(message):
                author = message.get("user")
                name = (await self.users.get(shortcut.team, author, client)).name if isinstance(author, str) and author \
                    else "a bot"
                lines.append(line(message, name))
        question = summary_question(lines)
        if not question:
            return await self._tell(shortcut, EMPTY_THREAD, client)
        asker = await self.users.get(shortcut.team, shortcut.user, client)
        await self._post(shortcut, f"_{escape(asker.name)} asked me to summarize this thread._", client)
        key = ConversationKey(PLATFORM, shortcut.team, shortcut.channel, shortcut.thread_ts)
        inbound = Inbound(key, f"shortcut:{shortcut.trigger}", shortcut.user, asker.name, question)
        await self._shortcut_turn(inbound, self._reply(shortcut, client))

    async def _ask_about(self, shortcut: Shortcut, client: AsyncWebClient) -> None:
        """The message becomes the context of a conversation in its thread, and the asker's first question about
        it is answered there; they go on in the thread like any conversation with the bot."""
        if await self._barred(shortcut, client):
            return
        key = ConversationKey(PLATFORM, shortcut.team, shortcut.channel, shortcut.thread_ts)
        author = shortcut.message_user or "someone"
        name = (await self.users.get(shortcut.team, author, client)).name if shortcut.message_user else author
        context = Inbound(key, shortcut.message_ts, author, name, context_of(ThreadLine(name, shortcut.message_text)),
                          Addressed.CONTEXT)
        await self.engine.handle(context, ContextOnly())
        asker = await self.users.get(shortcut.team, shortcut.user, client)
        question = Inbound(key, f"shortcut:{shortcut.trigger}", shortcut.user, asker.name, ASK_ABOUT_QUESTION)
        await self._shortcut_turn(question, self._reply(shortcut, client))

    async def _shortcut_turn(self, inbound: Inbound, reply: Reply) -> None:
        result = await self.engine.handle(inbound, reply)
        self._observe_turn(result.status)

    async def _post(self, shortcut: Shortcut, text: str, client: AsyncWebClient) -> None:
        try:
            await client.chat_postMessage(channel=shortcut.channel, thread_ts=shortcut.thread_ts, text=text)
        except SlackApiError as error:
            report(self.engine.failures, "chat.postMessage", error, shortcut.channel)

    async def _tell(self, shortcut: Shortcut, text: str, client: AsyncWebClient) -> None:
        """A note only the person who used the shortcut sees."""
        try:
            await client.chat_postEphemeral(channel=shortcut.channel, user=shortcut.user, text=text)
        except SlackApiError as error:
            report(self.engine.failures, "chat.postEphemeral", error, shortcut.channel)
        self._observe(Outcome.IGNORED)

