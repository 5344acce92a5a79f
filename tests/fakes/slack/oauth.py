"""Installing the app: the authorize page's redirect, oauth.v2.access (codes and refresh tokens), per-token identities.

Wire facts (Slack's "Installing with OAuth" guide and method references, python-slack-sdk's OAuth flow):
- The browser goes to ``/oauth/v2/authorize?client_id&scope&state[&redirect_uri][&team]``; on approval Slack
  redirects it to the redirect URL with ``?code=...&state=...``, on cancel with ``?error=access_denied&state=...``.
  Without ``redirect_uri`` the app's configured one is used (here ``redirect_url``).
- ``oauth.v2.access`` takes ``client_id``/``client_secret`` (slack_sdk sends them as HTTP Basic auth) and either
  ``code`` (once; within 10 minutes) or ``grant_type=refresh_token`` with ``refresh_token`` (token rotation). Its
  answer: ``access_token`` (xoxb-), ``token_type: bot``, ``scope``, ``bot_user_id``, ``app_id``, ``team`` (null
  for an org-wide install), ``enterprise`` (null outside Enterprise Grid), ``is_enterprise_install``,
  ``authed_user: {id}``, and with rotation on ``refresh_token`` and ``expires_in`` (seconds, 12 hours).
- ``auth.test`` answers for the token it is called with: that installation's team, bot user and org. An expired
  rotating token answers ``token_expired`` everywhere.
- ``tooling.tokens.rotate`` (app configuration tokens) takes ``refresh_token`` alone and answers ``token``,
  ``refresh_token``, ``team_id``, ``user_id``, ``iat``, ``exp``.
"""

from __future__ import annotations

import html
import itertools
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from .records import Call, _ApiError

if TYPE_CHECKING:
    from . import FakeSlack

STATE_COOKIE = "slack-app-oauth-state"
"""Where slack_bolt keeps the install state in the browser."""
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret"
TOKEN_LIFETIME = 43_200
_numbers = itertools.count(1)


@dataclass
class Workspace:
    """Somewhere the app can be installed: a workspace, or (team_id None) a whole Enterprise Grid org."""

    team_id: str | None
    name: str
    enterprise_id: str | None = None
    enterprise_name: str | None = None
    bot_user_id: str = ""
    bot_id: str = ""

    @property
    def org_wide(self) -> bool:
        return self.team_id is None


@dataclass
class IssuedToken:
    token: str
    place: Workspace
    installer: str
    scopes: str
    expires_at: float | None = None
    refresh_token: str | None = None


@dataclass
class BrowserInstall:
    """What a browser saw going through an install: the install page, then the bot's answer to Slack's redirect."""

    install_page: str
    status: int
    page: str
    back: str
    """Slack's redirect back to the bot, as the browser followed it."""
    headers: dict[str, str]
    """The headers the browser sent with it (its state cookie)."""


@dataclass
class InstallChoice:
    """What the person on the authorize page does next."""

    place: Workspace
    installer: str = "UINSTALLER"
    approve: bool = True


class SlackOAuth:
    """Mixin: the OAuth side of FakeSlack."""

    def _init_oauth(self: FakeSlack) -> None:
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.redirect_url: str | None = None
        """The app's configured redirect URL, used when the authorize request names none."""
        self.token_rotation = False
        """Issue expiring bot tokens with refresh tokens (the app's "token rotation" setting)."""
        self.token_lifetime = TOKEN_LIFETIME
        self.places: dict[str, Workspace] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.next_install: InstallChoice | None = None
        self._codes: dict[str, tuple[InstallChoice, str | None, float]] = {}
        self._refresh_tokens: dict[str, IssuedToken] = {}
        self._config_refresh: dict[str, str] = {}
        self._handlers["oauth.v2.access"] = self._oauth_v2_access
        self._handlers["tooling.tokens.rotate"] = self._tooling_tokens_rotate

    # ---- what tests set up ---------------------------------------------------------------

    def add_workspace(self: FakeSlack, team_id: str, name: str, *, enterprise_id: str | None = None,
                      enterprise_name: str | None = None) -> Workspace:
        place = Workspace(team_id, name, enterprise_id, enterprise_name, f"UBOT{team_id}", f"BBOT{team_id}")
        self.places[team_id] = place
        return place

    def add_org(self: FakeSlack, enterprise_id: str, name: str) -> Workspace:
        """An Enterprise Grid org, for an org-wide install; its workspaces are added with add_workspace."""
        place = Workspace(None, name, enterprise_id, name, f"UBOT{enterprise_id}", f"BBOT{enterprise_id}")
        self.places[enterprise_id] = place
        return place

    def issue_config_refresh_token(self: FakeSlack, team_id: str = "T1") -> str:
        token = f"xoxe-1-config-{next(_numbers)}"
        self._config_refresh[token] = team_id
        return token

    def issue_token(self: FakeSlack, place: Workspace, installer: str = "UINSTALLER", scopes: str | None = None) -> str:
        """A bot token for place as if it had been installed there (no browser involved), granted scopes (else the
        fake's)."""
        return self._issue(place, installer, self.scopes if scopes is None else scopes).token

    def tokens_for(self: FakeSlack, place: Workspace) -> list[str]:
        return [issued.token for issued in self.tokens.values() if issued.place is place]

    def expire(self: FakeSlack, token: str, in_seconds: float = 0.0) -> None:
        """Make a rotating token expire (answer token_expired) in_seconds from now."""
        self.tokens[token].expires_at = time.time() + in_seconds

    # ---- the browser's side --------------------------------------------------------------

    async def install_in_browser(self: FakeSlack, install_url: str, place: Workspace, *, approve: bool = True,
                                 installer: str = "UINSTALLER", cookie: bool = True,
                                 state: str | None = None) -> BrowserInstall:
        """A person opening the bot's install page, following its link here and choosing place (or cancelling).

        One browser: the state cookie the install page set travels with the redirect back, unless cookie is False;
        state replaces the state in both, as a forger would."""
        self.next_install = InstallChoice(place, installer, approve)
        async with aiohttp.ClientSession() as browser:
            async with browser.get(install_url) as response:
                assert response.status == 200, response.status
                page = await response.text()
                set_cookie = response.headers.get("Set-Cookie", "")
            link = re.search(r'href="([^"]*oauth/v2/authorize[^"]*)"', page)
            assert link is not None, "the install page links to Slack's authorize page"
            async with browser.get(html.unescape(link.group(1)), allow_redirects=False) as response:
                assert response.status == 302, await response.text()
                back = response.headers["Location"]
            issued = re.search(rf"{STATE_COOKIE}=([^;]+)", set_cookie)
            headers = {"Cookie": f"{STATE_COOKIE}={issued.group(1)}"} if cookie and issued else {}
            if state is not None:
                back = re.sub(r"state=[^&]*", f"state={state}", back)
                headers = {"Cookie": f"{STATE_COOKIE}={state}"}
            async with browser.get(back, headers=headers, allow_redirects=False) as response:
                return BrowserInstall(page, response.status, await response.text(), back, headers)

    async def _handle_authorize(self: FakeSlack, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id:
            return web.Response(status=400, text="invalid client_id")
        choice = self.next_install
        if choice is None:
            return web.Response(status=400, text="the test chose no workspace (set next_install)")
        target = query.get("redirect_uri") or self.redirect_url
        if not target:
            return web.Response(status=400, text="no redirect URL")
        state = query.get("state", "")
        if not choice.approve:
            location = f"{target}?{urlencode({'error': 'access_denied', 'state': state})}"
        else:
            code = f"code-{next(_numbers)}"
            self._codes[code] = (choice, query.get("redirect_uri"), time.time())
            location = f"{target}?{urlencode({'code': code, 'state': state})}"
        raise web.HTTPFound(location)

    # ---- Web API -------------------------------------------------------------------------

    def _token_refused(self: FakeSlack, token: str) -> str | None:
        issued = self.tokens.get(token)
        if issued is not None and issued.expires_at is not None and issued.expires_at <= time.time():
            return "token_expired"
        return None

    def _identity(self: FakeSlack, token: str) -> dict[str, Any] | None:
        """auth.test's answer for an installation's token; None for the fake's own default token."""
        issued = self.tokens.get(token)
        if issued is None:
            return None
        place = issued.place
        return {
            "url": f"https://{place.name.lower().replace(' ', '-')}.slack.com/",
            "team": place.name if not place.org_wide else None,
            "user": "chatbot",
            "team_id": place.team_id,
            "user_id": place.bot_user_id,
            "bot_id": place.bot_id,
            "enterprise_id": place.enterprise_id,
            "is_enterprise_install": place.org_wide,
        }

    def _oauth_v2_access(self: FakeSlack, call: Call) -> dict[str, Any]:
        if call.args.get("client_id") != self.client_id or call.args.get("client_secret") != self.client_secret:
            raise _ApiError("invalid_client_id" if call.args.get("client_id") != self.client_id else "bad_client_secret")
        if call.args.get("grant_type") == "refresh_token":
            previous = self._refresh_tokens.pop(str(call.args.get("refresh_token", "")), None)
            if previous is None:
                raise _ApiError("invalid_refresh_token")
            issued = self._issue(previous.place, previous.installer, previous.scopes)
            return self._token_answer(issued)
        code = str(call.args.get("code", ""))
        found = self._codes.pop(code, None)
        if found is None or time.time() - found[2] > 600:
            raise _ApiError("invalid_code")
        choice, redirect_uri, _ = found
        if redirect_uri is not None and call.args.get("redirect_uri") != redirect_uri:
            raise _ApiError("bad_redirect_uri")
        issued = self._issue(choice.place, choice.installer, self.scopes)
        return self._token_answer(issued)

    def _issue(self: FakeSlack, place: Workspace, installer: str, scopes: str) -> IssuedToken:
        issued = IssuedToken(f"xoxb-{place.team_id or place.enterprise_id}-{next(_numbers)}", place, installer, scopes)
        if self.token_rotation:
            issued.token = "xoxe.xoxb-" + issued.token.removeprefix("xoxb-")
            issued.expires_at = time.time() + self.token_lifetime
            issued.refresh_token = f"xoxe-1-{next(_numbers)}"
            self._refresh_tokens[issued.refresh_token] = issued
        self.tokens[issued.token] = issued
        return issued

    def _token_answer(self: FakeSlack, issued: IssuedToken) -> dict[str, Any]:
        place = issued.place
        answer: dict[str, Any] = {
            "access_token": issued.token,
            "token_type": "bot",
            "scope": issued.scopes,
            "bot_user_id": place.bot_user_id,
            "app_id": self.app_id,
            "team": None if place.org_wide else {"id": place.team_id, "name": place.name},
            "enterprise": {"id": place.enterprise_id, "name": place.enterprise_name} if place.enterprise_id else None,
            "is_enterprise_install": place.org_wide,
            "authed_user": {"id": issued.installer},
        }
        if issued.refresh_token is not None:
            answer["refresh_token"] = issued.refresh_token
            answer["expires_in"] = self.token_lifetime
        return answer

    def _tooling_tokens_rotate(self: FakeSlack, call: Call) -> dict[str, Any]:
        team = self._config_refresh.pop(str(call.args.get("refresh_token", "")), None)
        if team is None:
            raise _ApiError("invalid_refresh_token")
        now = int(time.time())
        refresh = self.issue_config_refresh_token(team)
        return {"token": f"xoxe.xoxp-1-config-{next(_numbers)}", "refresh_token": refresh, "team_id": team,
                "user_id": "UINSTALLER", "iat": now, "exp": now + self.token_lifetime}


TOKENLESS = frozenset({"oauth.v2.access", "tooling.tokens.rotate"})
"""Methods called with client credentials or a refresh token instead of a token."""
