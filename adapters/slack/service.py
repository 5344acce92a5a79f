"""The Slack app: Bolt over HTTP (Events API) or Socket Mode, translating events into engine turns."""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.commands import Caller, Commands
from chatbots.config import ConfigError, Config
from chatbots.engine import Engine
from chatbots.failures import FailureKind
from chatbots.types import Addressed, ConversationKey, Inbound, Outcome

from ..service import ServiceBase, vote_for
from ..tasks import TurnTasks
from . import oauth
from .assistant import is_assistant_thread
from .errors import report
from .events import PLATFORM, SlackMessage, text_fields, translate
from .files import SlackFiles
from .gate import Refusal, RequestGate
from .reply import ContextOnly, SlackReply, SlackTarget, WorkspaceFeatures
from .surfaces import AISurfaces
from .users import SlackUser, UserDirectory

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
BACKFILL_LIMIT = 200
BACKFILL_FILE_MESSAGES = 5
"""Earlier messages of a thread whose files are fetched when the bot is first mentioned in it (the newest ones): each
takes its turn before the answer, so older files are only named to the model, never downloaded."""
BACKFILL_TOO_OLD = "shared too far back in the thread before the bot was asked"
"""Messages read from a thread the bot joins midway: once, so it knows what was said before."""
MAX_REVOKED_TEAMS = 1_000
"""Workspaces erased for one team_access_revoked event (an org has at most a few thousand)."""
BACKFILL_REFUSED_NOTE = ("I can't read this thread's earlier messages (the app lacks a permission), so I only see "
                         "what is said from now on. An admin has been told.")


class SlackService(AISurfaces, ServiceBase):
    name = "slack"
    platform = PLATFORM

    def __init__(self, settings: Config, engine: Engine, *, update_interval: float = 1.0) -> None:
        self.oauth = settings.slack_oauth
        """OAuth mode: installed per workspace, each answered with its own token from the database."""
        if not settings.slack_bot_token and not self.oauth:
            raise ConfigError("SLACK_BOT_TOKEN is not set (or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth mode)")
        if self.oauth and settings.slack_app_token:
            raise ConfigError("SLACK_APP_TOKEN is set, but OAuth mode (SLACK_CLIENT_ID without SLACK_BOT_TOKEN) serves "
                              "its install pages over HTTP: unset SLACK_APP_TOKEN, or set SLACK_BOT_TOKEN for one workspace")
        self.socket_mode = bool(settings.slack_app_token)
        if self.oauth and not settings.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET is not set (OAuth mode serves HTTP: Basic Information > Signing Secret)")
        if not self.socket_mode and not settings.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET is not set (needed in HTTP mode; or set SLACK_APP_TOKEN for Socket Mode)")
        super().__init__(engine)
        self.config = settings
        self.update_interval = update_interval
        self.client = AsyncWebClient(
            token=settings.slack_bot_token,
            base_url=settings.slack_api_url or AsyncWebClient.BASE_URL,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # sleeps for Retry-After, then retries
                AsyncServerErrorRetryHandler(max_retry_count=2),
            ],
        )
        # Bolt reads SLACK_BOT_TOKEN from the environment itself and then warns that the client's token wins: the
        # client carries that same token, so the warning would only mislead the operator at every start.
        logging.getLogger("slack_bolt.AsyncApp").addFilter(_not_token_skipped)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=settings.slack_signing_secret or "socket-mode",
            request_verification_enabled=not self.socket_mode,
            process_before_response=False,
            ignoring_self_events_enabled=False,  # translate() drops our own messages, and reports it
            **self._oauth_options(),
        )
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.event("reaction_added")(self._on_reaction)
        self.app.event("reaction_removed")(self._on_reaction)
        self.app.command("/chatbot")(self._on_command)
        self.app.event("app_uninstalled")(self._on_uninstall)
        self.app.event("tokens_revoked")(self._on_uninstall)
        self.app.event("team_access_revoked")(self._on_team_access_revoked)
        self.orgs = oauth.WorkspaceOrgs()
        if self.oauth:
            self.app.use(self.orgs.remember)
        self.commands = Commands.for_engine(engine)
        engine.notifiers[PLATFORM] = self._post_notice
        self.gate = None if self.socket_mode else RequestGate(settings.slack_signing_secret or "")
        """HTTP mode only: Socket Mode has no public endpoint and needs no signing secret."""
        self.users = UserDirectory(self.client, failures=engine.failures)
        self.files = SlackFiles(settings.slack_bot_token or "", settings.slack_api_url)
        self.features = WorkspaceFeatures()
        self.turns = TurnTasks()
        self.bot_user_id = ""
        self._socket: AsyncSocketModeHandler | None = None
        self._closed = asyncio.Event()
        self._add_ai_surfaces()

    def _oauth_options(self) -> dict[str, Any]:
        """OAuth mode's flow and authorize for AsyncApp; nothing in single-token mode."""
        if not self.oauth:
            return {}
        # Bolt logs an error for a workspace without an installation; _not_installed says it in one plain line.
        logging.getLogger("slack_bolt.AsyncMultiTeamsAuthorization").addFilter(_not_missing_installation)
        installations = self.engine.installations
        return {"oauth_flow": oauth.oauth_flow(self.config, installations, self.client),
                "authorize": oauth.authorize(self.config, installations, self.client, self._not_installed)}

    def _not_installed(self, enterprise_id: str | None, team_id: str | None) -> None:
        log.warning("slack: a request from a workspace without an installation was acknowledged and ignored "
                    "(team %s, enterprise %s)", team_id, enterprise_id)
        self._observe(Outcome.IGNORED)

    def add_routes(self, app: web.Application) -> None:
        if self.gate is not None:
            app.router.add_post(EVENTS_PATH, self._handle_http)
        if self.oauth:
            app.router.add_get(oauth.INSTALL_PATH, self._handle_oauth)
            app.router.add_get(oauth.REDIRECT_PATH, self._handle_oauth)

    async def start(self) -> None:
        # One pooled HTTP session for every Web API call: slack_sdk otherwise opens a new one per call.
        self.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if self.oauth:  # no token of its own: each workspace's is checked when its requests arrive
            log.info("slack ready (OAuth mode: install at %s)", oauth.INSTALL_PATH)
            return
        try:
            identity = await self.client.auth_test()
        except SlackApiError as error:
            raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')})") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise ConfigError(f"cannot reach the Slack API ({type(error).__name__}): check SLACK_API_URL and the network") from None
        self.bot_user_id = identity["user_id"]
        self.panel.bot_name = identity.get("user") or self.panel.bot_name
        if self.socket_mode:
            await self._connect_socket()
        log.info("slack connected (%s mode)", "socket" if self.socket_mode else "http")

    async def _connect_socket(self) -> None:
        """Socket Mode. The first URL is asked for here rather than in slack_sdk's connect loop, which logs a
        traceback and retries forever when the app token is wrong: the operator needs one clear line instead."""
        token = self.config.slack_app_token or ""
        try:
            opened = await self.client.apps_connections_open(app_token=token)
        except SlackApiError as error:
            raise ConfigError(f"SLACK_APP_TOKEN was refused by Slack ({error.response.get('error')}): it must be the "
                              "app-level token (xapp-...) with the connections:write scope") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise ConfigError(f"cannot reach the Slack API ({type(error).__name__}): check SLACK_API_URL and the network") from None
        self._socket = AsyncSocketModeHandler(self.app, token)
        self._socket.client.wss_uri = opened["url"]
        await self._socket.connect_async()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace: float) -> None:
        self.turns.accepting = False
        if self._socket is not None:
            await self._socket.close_async()
        await self.turns.drain(grace)
        await self.files.close()
        if self.client.session is not None:
            await self.client.session.close()
        self._closed.set()

    async def _handle_http(self, request: web.Request) -> web.Response:
        """Check the signature before parsing anything (headers before the body), so junk costs next to nothing."""
        if not self.turns.accepting:
            return web.Response(status=503, text="shutting down")
        assert self.gate is not None
        try:
            raw = await self.gate.admit(request)
        except Refusal as refusal:
            return refusal.response()
        try:
            body = raw.decode()
        except UnicodeDecodeError:  # Slack always sends UTF-8
            return web.Response(status=400, text="malformed request body")
        try:
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
            response = await self.app.async_dispatch(bolt_request)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            # Signed but malformed (not JSON, or fields of the wrong shape that Bolt trips on): the sender's fault.
            log.warning("malformed Slack request rejected: %s", type(error).__name__)
            return web.Response(status=400, text="malformed request body")
        if response.status >= 500:
            # Listeners run after the ack, so a 5xx here is Bolt failing on the payload's shape: a redelivery would
            # fail the same way, and 5xx would invite one.
            log.warning("Slack request Bolt could not process was rejected")
            return web.Response(status=400, text="malformed request body")
        return await to_aiohttp_response(response)

    async def _handle_oauth(self, request: web.Request) -> web.Response:
        """The install page and Slack's return from it (OAuth mode): Bolt's flow, answering with our pages."""
        if not self.turns.accepting:
            return web.Response(status=503, text="shutting down")
        flow = self.app.oauth_flow
        assert flow is not None
        bolt_request = AsyncBoltRequest(body="", query=request.query_string, headers=dict(request.headers))
        try:
            if request.path == oauth.INSTALL_PATH:
                response = await flow.handle_installation(bolt_request)
            else:
                response = await flow.handle_callback(bolt_request)
        except self.engine.storage_errors as error:
            log.warning("slack: an install step failed, the database is unavailable: %s", type(error).__name__)
            response = oauth.page(503, "Try again in a moment", "The bot could not reach its database, so nothing "
                                  f'was installed. <a href="{oauth.INSTALL_PATH}">Start again</a>.')
        return await to_aiohttp_response(response)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """Runs after Bolt has acknowledged the event: de-duplicate, translate, and hand off to a turn."""
        bot_user = context.bot_user_id or self.bot_user_id
        message = translate(body, bot_user, allow_bots=self.config.allow_bots)
        if message is None:
            return self._observe(Outcome.IGNORED)
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not await self.engine.first_delivery(PLATFORM, event_id):
            return self._observe(Outcome.DUPLICATE)
        if message.needs_thread and not await self.engine.in_conversation(message.inbound.key):
            return self._observe(Outcome.NOT_OURS)  # not ours to read or keep
        self.turns.spawn(self._turn(message, _mapping(body.get("event")).get("files"), context.client, bot_user,
                                    _mapping(body.get("event"))))

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """`/chatbot ...`: answered privately in the ack itself, well within Slack's 3 seconds."""
        fields = text_fields(body.get("team_id"), body.get("user_id"), body.get("channel_id"))
        if fields is None:
            await ack(text="That command arrived incomplete. Please try again.")
            return self._observe(Outcome.COMMAND_MALFORMED)
        team, user, channel = fields
        text = body.get("text")
        text = text if isinstance(text, str) else ""
        admin = (await self.users.get(team, user, context.client)).is_admin
        caller = Caller(ConversationKey(PLATFORM, team, channel, channel), user, admin)
        answer = await self.commands.run(caller, text)
        await ack(text=answer, response_type="ephemeral")
        self._observe(Outcome.COMMAND)

    async def _on_reaction(self, body: dict[str, Any]) -> None:
        """👍 / 👎 on one of the bot's replies is feedback on that reply."""
        event = _mapping(body.get("event"))
        item = _mapping(event.get("item"))
        vote = vote_for(event.get("reaction"))
        fields = text_fields(body.get("team_id"), event.get("user"), item.get("ts"))
        if vote is None or fields is None:
            return self._observe(Outcome.IGNORED)
        team, user, ts = fields
        await self._vote(team, ts, user, vote, withdrawn=event.get("type") == "reaction_removed")

    async def _on_uninstall(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """The app was removed (or its bot token revoked): forget the installation, erase that workspace's data."""
        event = _mapping(body.get("event"))
        team = body.get("team_id")
        installation = None
        if self.oauth:  # Bolt checks no token for these events (it is gone): the installation says whose bot it was
            installations = oauth.StoreInstallations(self.engine.installations)
            installation = await installations.async_find_installation(
                enterprise_id=context.enterprise_id, team_id=context.team_id,
                is_enterprise_install=context.is_enterprise_install)
        bot_user_id = installation.bot_user_id if installation is not None else self.bot_user_id
        if event.get("type") == "tokens_revoked":
            revoked = _mapping(event.get("tokens")).get("bot")
            if not isinstance(revoked, list) or not bot_user_id or bot_user_id not in revoked:
                return self._observe(Outcome.IGNORED)  # a user token, not ours
        if not isinstance(team, str) or not team:
            return self._observe(Outcome.IGNORED)
        if installation is not None:
            await installations.async_delete_installation(
                enterprise_id=context.enterprise_id, team_id=context.team_id,
                is_enterprise_install=context.is_enterprise_install)
        await self._erase(team)

    async def _on_team_access_revoked(self, body: dict[str, Any]) -> None:
        """An org-wide install was removed from some workspaces of its org: erase what was kept for each of them."""
        teams = _mapping(body.get("event")).get("team_ids")
        removed = [team for team in teams[:MAX_REVOKED_TEAMS] if isinstance(team, str) and team] \
            if isinstance(teams, list) else []
        if not removed:
            return self._observe(Outcome.IGNORED)
        for team in removed:
            await self._erase(team)

    async def _turn(self, message: SlackMessage, files: object, client: AsyncWebClient, bot_user: str,
                    event: dict[str, Any] | None = None) -> None:
        """One answer, every call made with client: the token of the workspace the message came from."""
        inbound = message.inbound
        if files:
            shared = self.files.shared(await self.files.looked_up(files, client), client.token)
            inbound = replace(inbound, files=shared)
        if message.needs_thread or message.started_mid_thread:
            # Several people may share this thread, and the model reads who said what: worth the (cached) lookup.
            user: SlackUser | None = await self.users.get(inbound.key.workspace, message.user_id, client)
        else:
            user = self.users.known(inbound.key.workspace, message.user_id)  # names matter once others join
        if user is not None:
            inbound = replace(inbound, author_name=user.name)
        if message.started_mid_thread and not await self.engine.in_conversation(inbound.key):
            await self._read_thread_once(inbound, client, bot_user)
        if event is not None and is_assistant_thread(event):
            first = not await self.engine.in_conversation(inbound.key)
            asked, note = await self.panel.before_answer(replace(message, inbound=inbound), first, client)
            if asked is None:
                await self._note(inbound.key, note or "", client)
                return self._observe(Outcome.IGNORED)
            inbound = asked
        target = SlackTarget(inbound.key.workspace, inbound.key.channel, message.thread_ts, message.user_id)
        reply = SlackReply(client, target, self.features, self.update_interval, self.engine.failures)
        result = await self.engine.handle(inbound, reply)
        self._observe_turn(result.status)

    async def _read_thread_once(self, mention: Inbound, client: AsyncWebClient, bot_user: str) -> None:
        """Store what was said in the thread before the bot was mentioned, as context."""
        key = mention.key
        try:
            response = await client.conversations_replies(channel=key.channel, ts=key.thread, limit=BACKFILL_LIMIT)
        except SlackApiError as error:
            if report(self.engine.failures, "conversations.replies", error, key.channel) is FailureKind.MISSING_SCOPE:
                await self._note(key, BACKFILL_REFUSED_NOTE, client)
            return
        messages = [earlier for earlier in response.get("messages") or [] if self._earlier(earlier, mention, bot_user)]
        fetched = {id(earlier) for earlier in [m for m in messages if m.get("files")][-BACKFILL_FILE_MESSAGES:]}
        for earlier in messages:
            ts, user, text = earlier["ts"], earlier["user"], earlier["text"]
            name = (await self.users.get(key.workspace, user, client)).name
            if id(earlier) in fetched:
                files = self.files.shared(await self.files.looked_up(earlier.get("files"), client), client.token)
            else:
                files = self.files.named(earlier.get("files"), BACKFILL_TOO_OLD)
            earlier_message = Inbound(key, ts, user, name, html.unescape(text), Addressed.CONTEXT, files)
            await self.engine.handle(earlier_message, ContextOnly())

    def _earlier(self, earlier: object, mention: Inbound, bot_user: str) -> bool:
        """Whether a message from conversations.replies is a person's, said before the mention (which arrives itself)."""
        if not isinstance(earlier, dict):
            return False
        ts, user, text = earlier.get("ts"), earlier.get("user"), earlier.get("text")
        if not isinstance(ts, str) or not isinstance(user, str) or not isinstance(text, str):
            return False
        if _ts_order(ts) >= _ts_order(mention.message_id):
            return False
        return not (user == bot_user or earlier.get("bot_id") and not self.config.allow_bots)


    async def _post_notice(self, workspace: str, channel: str, text: str) -> None:
        """A message from the bot in a channel (budget alerts); its failure is reported, then raised to the caller.
        In OAuth mode it goes out with that workspace's own bot token."""
        token: dict[str, Any] = {}
        if self.oauth:
            app = await self.orgs.installation(self.engine.installations, workspace)
            if app is None:
                raise LookupError("the app is not installed in that workspace")
            token = {"token": app.bot_token}
        try:
            await self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False, unfurl_media=False, **token)
        except SlackApiError as error:
            report(self.engine.failures, "chat.postMessage", error, channel)
            raise

    async def _note(self, key: ConversationKey, text: str, client: AsyncWebClient) -> None:
        """A short note in the thread about something the bot could not do; its own failure is only logged."""
        try:
            await client.chat_postMessage(channel=key.channel, thread_ts=key.thread, text=f"_{text}_")
        except SlackApiError as error:
            report(self.engine.failures, "chat.postMessage", error, key.channel)


def _not_token_skipped(record: logging.LogRecord) -> bool:
    """Drops Bolt's "`token` will be unused" warning (see SlackService.__init__)."""
    return record.getMessage() != warning_client_prioritized_and_token_skipped()


def _not_missing_installation(record: logging.LogRecord) -> bool:
    """Drops Bolt's "AuthorizeResult ... was not found" error (see SlackService._oauth_options)."""
    return "AuthorizeResult" not in record.getMessage()


def _ts_order(ts: str) -> tuple[int, int]:
    """Slack timestamps ("1700000000.000100") as sortable numbers; malformed ones sort last."""
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds), int(micros or 0)
    except ValueError:
        return (2**62, 0)


def _mapping(value: object) -> dict[str, Any]:
    """A payload field that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}
