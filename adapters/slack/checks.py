"""Slack's `chatbots doctor` check: the bot token, its scopes, and Socket Mode's app token or HTTP mode's secret;
in OAuth mode, every installation's token."""

from __future__ import annotations

import asyncio

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.checks import OK, SKIPPED, Check, CheckFailed, Row, describe, safe_url
from chatbots.config import Config
from chatbots.installations import InstalledApp, installed_apps

SLACK_BOT_SCOPES = frozenset({
    "app_mentions:read", "assistant:write", "channels:history", "channels:read", "chat:write", "commands", "files:read",
    "groups:history", "groups:read", "im:history", "mpim:history", "reactions:read", "users:read",
})
"""The bot scopes both manifests in adapters/slack/manifests/ ask for (a test keeps the two in step)."""

SCOPE_NEEDS = {
    "assistant:write": "the assistant panel gets no suggested prompts, titles or status",
    "channels:read": "the assistant panel cannot tell whether it may read the channel beside it",
    "groups:read": "the assistant panel cannot tell whether it may read a private channel beside it",
}
"""What the AI-app surfaces lose without a scope, said by `chatbots doctor`."""

SLACK_TOKEN_REFUSED = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                       "org_login_required", "ekm_access_denied", "team_access_not_granted"}


def checks(settings: Config, timeout: float) -> list[Check]:
    unreachable = "check that SLACK_API_URL (or slack.com) is reachable from here"
    if settings.slack_oauth:
        return [Check("slack", lambda: installations(settings, timeout), unreachable)]
    return [Check("slack", lambda: slack(settings, timeout), unreachable)]


async def installations(settings: Config, timeout: float) -> Row:
    """OAuth mode: each installation's bot token, through auth.test."""
    if not settings.slack_signing_secret:
        raise CheckFailed("OAuth mode, SLACK_SIGNING_SECRET not set",
                          "set SLACK_SIGNING_SECRET (Basic Information > Signing Secret): OAuth mode serves HTTP")
    found = await installed_apps(settings.database_url, settings.db_path)
    if not found:
        return Row("slack", OK, "OAuth mode, no installations yet (people install the app at /slack/install)")
    base_url = settings.slack_api_url or AsyncWebClient.BASE_URL
    client = AsyncWebClient(base_url=base_url if base_url.endswith("/") else base_url + "/", timeout=max(1, int(timeout)))
    checked = await asyncio.gather(*(_refusal(client, app) for app in found))
    refused = [problem for problem, _ in checked if problem]
    narrow = [missing for _, missing in checked if missing]
    working = len(found) - len(refused)
    detail = (f"OAuth mode, {len(found)} installation{'s' * (len(found) != 1)}, "
              f"{working} token{'s' * (working != 1)} work{'s' * (working == 1)}")
    problems, fixes = [], []
    if refused:
        problems.append(f"refused: {'; '.join(refused)}")
        fixes.append("install the app again in those workspaces (/slack/install); an uninstalled one is removed "
                     "when Slack says so (app_uninstalled)")
    if narrow:
        problems.append(f"missing scopes: {'; '.join(narrow)}")
        fixes.append("add the missing scopes to the app (OAuth & Permissions, and SLACK_SCOPES if set), then install "
                     "it again in those workspaces (/slack/install)")
    if problems:
        raise CheckFailed(f"{detail}; {'; '.join(problems)}", "; ".join(fixes))
    return Row("slack", OK, detail)


async def _refusal(client: AsyncWebClient, app: InstalledApp) -> tuple[str | None, str | None]:
    """What is wrong with one installation: (its token refused, the scopes it lacks), each None when all is well."""
    where = f"{app.enterprise_name or app.enterprise_id} (org-wide)" if app.is_enterprise_install \
        else f"{app.team_name or app.team_id} ({app.team_id})"
    try:
        identity = await client.auth_test(token=app.bot_token)
    except SlackApiError as error:
        code = error.response.get("error") or f"HTTP {error.response.status_code}"
        if code == "token_expired" and app.bot_refresh_token:
            return None, None  # a rotating token: refreshed before its workspace's next request
        return f"{where} {code}", None
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as error:
        raise CheckFailed(f"cannot reach Slack at {safe_url(str(client.base_url))} ({describe(error)})",
                          "check SLACK_API_URL (unset means Slack's own) and the network") from None
    missing = _missing_scopes(identity.headers or {})
    return None, f"{where} {', '.join(missing)}" if missing else None


def _missing_scopes(headers: dict[str, str]) -> list[str]:
    """The bot scopes the features need that auth.test's X-OAuth-Scopes header does not list (none without it)."""
    granted = next((value for name, value in headers.items() if name.lower() == "x-oauth-scopes"), None)
    if granted is None:
        return []
    return sorted(SLACK_BOT_SCOPES - {scope.strip() for scope in granted.split(",")})


async def slack(settings: Config, timeout: float) -> Row:
    if not settings.slack_bot_token:
        return Row("slack", SKIPPED, "SLACK_BOT_TOKEN not set")
    base_url = settings.slack_api_url or AsyncWebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    client = AsyncWebClient(token=settings.slack_bot_token, base_url=base_url, timeout=max(1, int(timeout)))
    try:
        identity = await client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error") or f"HTTP {error.response.status_code}"
        if code in SLACK_TOKEN_REFUSED:
            raise CheckFailed(f"SLACK_BOT_TOKEN was refused ({code})",
                              "copy SLACK_BOT_TOKEN again from the app's OAuth & Permissions page (Bot User OAuth Token, "
                              "xoxb-...); reinstall the app to the workspace if it was removed") from None
        raise CheckFailed(f"auth.test failed ({code})", "check SLACK_BOT_TOKEN and SLACK_API_URL") from None
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as error:
        raise CheckFailed(f"cannot reach Slack at {safe_url(base_url)} ({describe(error)})",
                          "check SLACK_API_URL (unset means Slack's own) and the network") from None
    who = (f"team {identity.get('team')} ({identity.get('team_id')}), "
           f"bot user {identity.get('user')} ({identity.get('user_id')})")
    problems: list[str] = []
    fixes: list[str] = []
    if not settings.slack_bot_token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN is not a bot token")
        fixes.append("use the Bot User OAuth Token (xoxb-...) as SLACK_BOT_TOKEN, not a user or app token")
    missing = _missing_scopes(identity.headers or {})
    if missing:
        problems.append(f"missing scopes {', '.join(missing)}"
                        + (" (without files:read, files people share cannot be read)" if "files:read" in missing else "")
                        + "".join(f" (without {scope}, {why})" for scope, why in SCOPE_NEEDS.items() if scope in missing))
        fixes.append(f"add the bot scopes {', '.join(missing)} (OAuth & Permissions, or re-create the app from "
                     "adapters/slack/manifests/) and reinstall the app to the workspace")
    if settings.slack_app_token:
        mode = "Socket Mode"
        try:
            await client.apps_connections_open(app_token=settings.slack_app_token)
            mode += " (app token works)"
        except SlackApiError as error:
            code = error.response.get("error") or f"HTTP {error.response.status_code}"
            problems.append(f"SLACK_APP_TOKEN was refused ({code})")
            if code == "missing_scope":
                fixes.append("give the app-level token the connections:write scope (Basic Information > App-Level "
                             "Tokens) and put it in SLACK_APP_TOKEN")
            elif code == "not_allowed_token_type":
                fixes.append("SLACK_APP_TOKEN must be an app-level token (xapp-...) from Basic Information > "
                             "App-Level Tokens, with connections:write")
            else:
                fixes.append("create an app-level token with connections:write (Basic Information > App-Level "
                             "Tokens) and put it in SLACK_APP_TOKEN; enable Socket Mode for the app")
    else:
        mode = "HTTP mode"
        if not settings.slack_signing_secret:
            problems.append("SLACK_SIGNING_SECRET not set")
            fixes.append("set SLACK_SIGNING_SECRET (Basic Information > Signing Secret), or SLACK_APP_TOKEN for "
                         "Socket Mode")
        else:
            mode += " (signing secret set)"
    if problems:
        raise CheckFailed(f"{who}, {mode}: " + "; ".join(problems), "; ".join(fixes))
    return Row("slack", OK, f"{who}, {mode}")
