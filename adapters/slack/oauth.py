"""Slack's OAuth mode: installing the app in many workspaces, on slack_bolt's OAuth flow over our own Store.

Bolt runs the flow (install page, state check, oauth.v2.access, token rotation before expiry); this module gives it
where to keep installations and states (the bot's database, so replicas share them), the pages people see, and
one log line for events from a workspace without an installation. Tokens never leave the store except to answer.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from logging import Logger
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

from chatbots.config import Config
from chatbots.installations import Installations, InstalledApp
from chatbots.lru import LRU

from .checks import SLACK_BOT_SCOPES

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600
"""How long an install may take between the install page and Slack's return (Bolt's default)."""
MAX_STATE = 200
"""Characters: a longer state was not issued here, and is refused before anything looks it up."""
ROTATE_MINUTES = 120
"""Rotating tokens are refreshed when they have less than this left (Slack's expire after 12 hours)."""
MAX_CACHED = 10_000
"""Authorize results kept (one auth.test per token saved): past this the cache starts over."""
MAX_ORGS = 10_000
"""Workspaces whose Enterprise Grid org is remembered (see WorkspaceOrgs)."""
_CODE = re.compile(r"[a-z_]{1,40}")
_EXCHANGE_ERROR = re.compile(r"'error': '([a-z_]{1,40})'")
CREDENTIAL_ERRORS = {"invalid_client_id", "bad_client_secret", "invalid_client", "bad_redirect_uri"}


class _ExchangeFailure(logging.Filter):
    """Bolt logs a failed oauth.v2.access with the one-time code and Slack's whole answer: keep only the error
    code, and name the setting that fixes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "oauth.v2.access" not in message:
            return True
        found = _EXCHANGE_ERROR.search(message)
        error = found.group(1) if found else "unknown"
        fix = ("check SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_REDIRECT_URI" if error in CREDENTIAL_ERRORS
               else "the person can start the install again")
        record.msg, record.args = "slack: oauth.v2.access refused an install (%s): %s", (error, fix)
        return True


flow_log = logging.getLogger(f"{__name__}.flow")
flow_log.addFilter(_ExchangeFailure())


def _key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> tuple[str, str]:
    """An installation's row: an org-wide install answers for every workspace of its org, so its team is ''."""
    return enterprise_id or "", "" if is_enterprise_install else team_id or ""


class StoreInstallations(AsyncInstallationStore):
    """Bolt's installation store, kept in the bot's database. One bot installation per workspace or org (the app
    asks for no user scopes): a lookup for another user than the installer finds nothing, so Bolt uses the bot's."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    @property
    def logger(self) -> Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        enterprise, team = _key(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        await self.installations.save(InstalledApp(
            enterprise, team, bool(installation.is_enterprise_install), installation.bot_token or "",
            installation.bot_user_id or "", bot_id=installation.bot_id or "",
            bot_scopes=",".join(installation.bot_scopes or []), bot_refresh_token=installation.bot_refresh_token,
            bot_token_expires_at=installation.bot_token_expires_at, team_name=installation.team_name or "",
            enterprise_name=installation.enterprise_name or "", app_id=installation.app_id or "",
            installer_id=installation.user_id or "",
        ))

    async def async_save_bot(self, bot: Bot) -> None:
        enterprise, team = _key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        found = await self.installations.find(enterprise, team)
        if found is None:
            return
        await self.installations.save(replace(
            found, bot_token=bot.bot_token, bot_refresh_token=bot.bot_refresh_token,
            bot_token_expires_at=bot.bot_token_expires_at, bot_scopes=",".join(bot.bot_scopes or []),
        ))

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None, is_enterprise_install: bool | None = False
                                      ) -> Installation | None:
        found = await self.installations.find(*_key(enterprise_id, team_id, is_enterprise_install))
        if found is None or (user_id is not None and user_id != found.installer_id):
            return None
        return Installation(
            app_id=found.app_id or None, enterprise_id=found.enterprise_id or None,
            enterprise_name=found.enterprise_name or None, team_id=found.team_id or None,
            team_name=found.team_name or None, bot_token=found.bot_token, bot_id=found.bot_id or None,
            bot_user_id=found.bot_user_id or None, bot_scopes=found.bot_scopes,
            bot_refresh_token=found.bot_refresh_token, bot_token_expires_at=found.bot_token_expires_at,
            user_id=found.installer_id, is_enterprise_install=found.is_enterprise_install, token_type="bot",
        )

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        found = await self.async_find_installation(enterprise_id=enterprise_id, team_id=team_id,
                                                   is_enterprise_install=is_enterprise_install)
        return None if found is None else found.to_bot()

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None, is_enterprise_install: bool | None = False) -> None:
        await self.installations.delete(*_key(enterprise_id, team_id, is_enterprise_install))

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None,
                               is_enterprise_install: bool | None = False) -> None:
        await self.installations.delete(*_key(enterprise_id, team_id, is_enterprise_install))

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None,
                               is_enterprise_install: bool | None = False) -> None:
        await self.installations.delete(*_key(enterprise_id, team_id, is_enterprise_install))


class StoreStates(AsyncOAuthStateStore):
    """One-use install states in the bot's database, each signed so a forged one is refused without a lookup."""

    def __init__(self, installations: Installations, secret: str, seconds: int = STATE_SECONDS) -> None:
        self.installations = installations
        self._secret = hashlib.sha256(b"chatbots slack install state\x00" + secret.encode()).digest()
        self.seconds = seconds

    @property
    def logger(self) -> Logger:
        return log

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        nonce = secrets.token_urlsafe(24)
        state = f"{nonce}.{self._sign(nonce)}"
        await self.installations.issue_state(state, self.installations.now() + timedelta(seconds=self.seconds))
        return state

    async def async_consume(self, state: str) -> bool:
        if not isinstance(state, str) or len(state) > MAX_STATE:
            return False
        nonce, _, signature = state.partition(".")
        if not hmac.compare_digest(self._sign(nonce), signature):
            return False
        return await self.installations.consume_state(state)


class InstalledOnly(AsyncInstallationStoreAuthorize):
    """Bolt's authorize over our store, telling the service once per event when a workspace has no installation
    (Bolt then acknowledges the event and answers nothing)."""

    def __init__(self, *, missing: Callable[[str | None, str | None], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.missing = missing

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **actor: Any) -> AuthorizeResult | None:
        if len(self.authorize_result_cache) > MAX_CACHED:
            self.authorize_result_cache.clear()
        result = await super().__call__(context=context, enterprise_id=enterprise_id, team_id=team_id,
                                        user_id=user_id, **actor)
        if result is None:
            self.missing(enterprise_id, team_id)
        return result


class WorkspaceOrgs:
    """The Enterprise Grid org of each workspace whose requests reached this process. A message the bot sends on its
    own (a budget alert, raised by a turn of that workspace) finds by it the installation that answers there: the
    workspace's own under its org, or the org-wide one."""

    def __init__(self) -> None:
        self._orgs: LRU[str, str] = LRU(MAX_ORGS)

    async def remember(self, body: dict[str, Any], context: AsyncBoltContext,
                       next: Callable[[], Awaitable[Any]]) -> Any:
        """Bolt middleware: runs for every request, before its listener. An org-wide install's requests carry no
        team in Bolt's context: the workspace is the one the service keys the request by (event, command or click)."""
        if context.enterprise_id:
            team, user = body.get("team"), body.get("user")
            for found in (context.team_id, body.get("team_id"), team.get("id") if isinstance(team, dict) else None,
                          user.get("team_id") if isinstance(user, dict) else None):
                if isinstance(found, str) and found:
                    self._orgs.put(found, context.enterprise_id)
        return await next()

    async def installation(self, installations: Installations, team: str) -> InstalledApp | None:
        org = self._orgs.get(team) or ""
        found = await installations.find(org, team)
        if found is None and org:
            found = await installations.find(org, "")
        return found


def state_secret(settings: Config) -> str:
    """SLACK_STATE_SECRET, else one derived from the client secret (every replica derives the same)."""
    return settings.slack_state_secret or f"derived:{settings.slack_client_secret}"


def authorization_url(api_url: str | None) -> str | None:
    """Where the install page sends browsers: Slack's, or the same path on SLACK_API_URL's host when it is set."""
    if not api_url:
        return None
    return str(URL(api_url).origin().with_path("/oauth/v2/authorize"))


def oauth_flow(settings: Config, installations: Installations, client: AsyncWebClient) -> AsyncOAuthFlow:
    """The install flow: oauth.v2.access goes through client (SLACK_API_URL's base when it is set)."""
    return AsyncOAuthFlow(client=client, logger=flow_log, settings=AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        scopes=list(settings.slack_scopes or sorted(SLACK_BOT_SCOPES)),
        user_scopes=[],
        redirect_uri=settings.slack_redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorization_url(settings.slack_api_url),
        installation_store=StoreInstallations(installations),
        state_store=StoreStates(installations, state_secret(settings)),
        state_expiration_seconds=STATE_SECONDS,
        token_rotation_expiration_minutes=ROTATE_MINUTES,
        callback_options=AsyncCallbackOptions(success=_installed, failure=_not_installed),
        logger=log,
    ))


def authorize(settings: Config, installations: Installations, client: AsyncWebClient,
              missing: Callable[[str | None, str | None], None]) -> InstalledOnly:
    """Bolt's authorize, with token rotation through client (so refreshes go where SLACK_API_URL says)."""
    return InstalledOnly(
        missing=missing, logger=log, installation_store=StoreInstallations(installations), client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret, token_rotation_expiration_minutes=ROTATE_MINUTES,
        cache_enabled=True, client=client,
    )


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    installation = args.installation
    where = installation.enterprise_name if installation.is_enterprise_install else installation.team_name
    scope = "every workspace of " if installation.is_enterprise_install else ""
    log.info("slack: installed in %s %s", "org" if installation.is_enterprise_install else "workspace",
             installation.enterprise_id if installation.is_enterprise_install else installation.team_id)
    return page(200, "Installed", f"The bot is now installed in {scope}<b>{html.escape(where or 'your workspace')}</b>. "
                                   "Invite it to a channel (<code>/invite @chatbot</code>) and mention it, or send "
                                   "it a direct message.")


async def _not_installed(args: AsyncFailureArgs) -> BoltResponse:
    reason = args.reason if _CODE.fullmatch(args.reason or "") else "unknown"
    again = f'<a href="{INSTALL_PATH}">Start again</a>.'
    log.info("slack: an install did not complete (%s)", reason)
    if reason == "access_denied":
        return page(200, "Installation cancelled", f"Nothing was installed. {again}")
    if reason in ("invalid_state", "invalid_browser"):
        return page(400, "This install link has expired",
                    "The install took too long, was already used, or was finished in another browser than the one "
                    f"that started it. Nothing was installed. {again}")
    if reason == "storage_error":
        return page(500, "Installation not saved", f"Slack approved it, but the bot could not save it. {again}")
    return page(400, "Installation failed", f"Slack did not confirm the installation. Nothing was installed. {again}")


def page(status: int, title: str, body_html: str) -> BoltResponse:
    """A small self-contained page (no scripts, nothing fetched)."""
    text = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family: sans-serif; max-width: 40em; margin: 4em auto\"><h1>{html.escape(title)}</h1>"
            f"<p>{body_html}</p></body></html>")
    return BoltResponse(status=status, body=text, headers={"Content-Type": "text/html; charset=utf-8",
                                                           "Cache-Control": "no-store"})
