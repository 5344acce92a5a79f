"""`chatbots doctor`: gather every owner's checks, run them concurrently under one deadline each, and print a table.

The checks live with what they check: the database, model server and moderation in chatbots/checks.py (over the
one OpenAIClient), Slack's in adapters/slack/checks.py, Discord's in adapters/discord/checks.py. This outer layer
lives in adapters/ because it names the platforms, which the core must not. Nothing it prints carries a secret:
the checks' details name variables, hosts and error codes, and the finished text is scrubbed of every configured
token, key and extra header value as a last guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chatbots.checks import FAIL, Check, CheckFailed, Row, core_checks
from chatbots.config import Config

from .discord import checks as discord_checks
from .slack import checks as slack_checks

CHECK_TIMEOUT = 10.0
"""Seconds each check may take before it is reported as failed."""


async def doctor(settings: Config, *, timeout: float = CHECK_TIMEOUT) -> tuple[int, str]:
    """Run every check; the exit code (0 when nothing failed, else 1) and the text to print."""
    async with core_checks(settings, timeout) as core:
        checks = [*core, *slack_checks.checks(settings, timeout), *discord_checks.checks(settings, timeout)]
        rows = await asyncio.gather(*(_bounded(check, timeout) for check in checks))
    failed = any(row.status == FAIL for row in rows)
    notes: list[str] = []
    if not settings.slack_bot_token and not settings.slack_oauth and not settings.discord_bot_token:
        notes.append("note: no platform is configured; `chatbots run` needs SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and "
                     "SLACK_CLIENT_SECRET) or DISCORD_BOT_TOKEN")
    return (1 if failed else 0), _scrub(render(rows, notes), settings)


async def _bounded(check: Check, timeout: float) -> Row:
    """One check under its deadline; an unexpected error is a failed row, never a crashed doctor."""
    try:
        async with asyncio.timeout(timeout):
            return await check.run()
    except CheckFailed as failure:
        return Row(check.name, FAIL, failure.detail, failure.fix)
    except TimeoutError:
        return Row(check.name, FAIL, f"no answer within {timeout:g} s", check.timeout_fix)
    except Exception as error:  # a doctor that crashes on the one broken thing is no help
        return Row(check.name, FAIL, f"the check itself failed ({type(error).__name__})",
                   "this is a bug in `chatbots doctor`: please report it with this line")


def render(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """An aligned table (check, status, detail), then one `fix:` line per failure and any notes."""
    header = Row("check", "status", "detail")
    widths = [max(len(row.check) for row in [header, *rows]), max(len(row.status) for row in [header, *rows])]
    lines = [f"{row.check:<{widths[0]}}  {row.status:<{widths[1]}}  {row.detail}".rstrip() for row in [header, *rows]]
    fixes = [f"fix: {row.check}: {row.fix}" for row in rows if row.status == FAIL and row.fix]
    after = fixes + list(notes)
    return "\n".join(lines + ([""] + after if after else []))


def _scrub(text: str, settings: Config) -> str:
    """The last guard: no configured secret ever reaches the output, whatever an error message carried."""
    for secret in (settings.openai_api_key, settings.moderation_api_key, settings.slack_bot_token,
                   settings.slack_app_token, settings.slack_signing_secret, settings.discord_bot_token,
                   settings.slack_client_secret, settings.slack_state_secret,
                   *(value for _, value in settings.model_headers)):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
