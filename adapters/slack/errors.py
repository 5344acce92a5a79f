"""Slack Web API errors the operator can act on: the scope to add, the channel to invite the bot to, the token.

Each failed call is reported to the engine's FailureLog (counted by kind, logged once per interval) with the method,
Slack's error code and the step that fixes it. Slack's error codes are identifiers, never message text.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError

from chatbots.failure_log import FailureLog
from chatbots.failures import FailureKind

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:,-]{1,200}")
TOKEN_ERRORS = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}


class IncompleteResponse(Exception):
    """Slack answered ok without a field the next call needs (a stream without its ts)."""

    def __init__(self, method: str, field: str) -> None:
        super().__init__(f"{method} answered ok without {field}")
        self.method = method
        self.field = field


def required(response: Any, method: str, field: str = "ts") -> str:
    """A field the next call needs from an ok response, or IncompleteResponse."""
    value = response.get(field) if hasattr(response, "get") else None
    if not isinstance(value, str) or not value:
        raise IncompleteResponse(method, field)
    return value


def error_code(error: SlackApiError) -> str:
    code = error.response.get("error") if error.response is not None else None
    return _identifier(code) or "unknown"


def classify(error: SlackApiError, channel: str | None = None) -> tuple[FailureKind, str]:
    """The kind of a Slack API error and the step that fixes it."""
    code = error_code(error)
    where = f"channel {_identifier(channel) or '?'}"
    if code == "missing_scope":
        needed = _identifier(error.response.get("needed")) or "(Slack did not say which)"
        return FailureKind.MISSING_SCOPE, (f"the app lacks the {needed} scope: add it under OAuth & Permissions, "
                                           "then reinstall the app to the workspace")
    if code == "not_in_channel":
        return FailureKind.NOT_IN_CHANNEL, f"the bot is not a member of {where}: invite it there (/invite @the-bot)"
    if code == "channel_not_found":
        return FailureKind.CHANNEL_NOT_FOUND, (f"{where} does not exist or the bot cannot see it: for a private "
                                               "channel, invite the bot (/invite @the-bot)")
    if code in TOKEN_ERRORS:
        return FailureKind.TOKEN_REFUSED, ("Slack refused the bot's token: reinstall the app and update SLACK_BOT_TOKEN "
                                           "(in OAuth mode, reinstall it to that workspace from /slack/install)")
    return FailureKind.PLATFORM_ERROR, "see Slack's documentation of the method for this error"


def report(failures: FailureLog, method: str, error: Exception, channel: str | None = None) -> FailureKind:
    """Report one failed Web API call; returns its kind."""
    if isinstance(error, IncompleteResponse):
        failures.report("slack", FailureKind.INCOMPLETE_RESPONSE, "slack %s answered ok without %s", method, error.field,
                        logger=log)
        return FailureKind.INCOMPLETE_RESPONSE
    if not isinstance(error, SlackApiError):
        failures.report("slack", FailureKind.PLATFORM_ERROR, "slack %s failed: %s", method, type(error).__name__, logger=log,
                        level=logging.INFO)
        return FailureKind.PLATFORM_ERROR
    kind, fix = classify(error, channel)
    level = logging.INFO if kind is FailureKind.PLATFORM_ERROR else logging.WARNING  # only the actionable ones warn
    failures.report("slack", kind, "slack %s failed: %s; %s", method, error_code(error), fix, logger=log, level=level)
    return kind


def _identifier(value: object) -> str | None:
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None
