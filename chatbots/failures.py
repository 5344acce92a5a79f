"""What kind of failure a model or moderation server reported, what the person is told, and what the operator reads.

Servers say what went wrong in several dialects: OpenAI's `{"error": {"message", "type", "param", "code"}}`, the
same shape from gateways with numbers written as strings and "None" for nothing (LiteLLM's proxy), a flat
`{"object": "error", "message", "type", "code"}` (vLLM), `{"error": "text"}` (Ollama, TGI) and `{"detail": ...}`
(FastAPI servers). classify() reads them all into one Failure. The message text is read to tell kinds apart
(gateways often put the provider's error only there) but never logged: it may quote the request, and some servers
echo the key back. The operator sees the status, type and code, which name the failure without its text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FailureKind(StrEnum):
    """Kinds of failure; the values are the `kind` label of `chatbots_failures_total` and appear in the log."""

    KEY_REFUSED = "key_refused"
    """401/403, or a gateway refusing the key in its own words: only an admin can fix it."""
    MODEL_UNKNOWN = "model_unknown"
    """404, model_not_found, a 400 naming the model, a gateway's model access denied."""
    QUOTA_EXHAUSTED = "quota_exhausted"
    """insufficient_quota, a gateway's budget exceeded: not retried, unlike a rate limit."""
    RATE_LIMITED = "rate_limited"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_FILTERED = "content_filtered"
    REJECTED = "rejected"
    """Any other refusal of the request itself (400, 422)."""
    IMAGES_REFUSED = "images_refused"
    """A refusal of the request's image parts (a model without vision; see chatbots.model)."""
    IMAGE_UNREADABLE = "image_unreadable"
    """A vision model refusing an image itself (damaged, or a format or size it does not take): it reads others."""
    SERVER_ERROR = "server_error"
    """5xx, an error event inside the stream, a stream that broke off."""
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    NO_ENDPOINT = "no_endpoint"
    """The server has no such endpoint (a chat server without /moderations)."""
    MALFORMED = "malformed"
    """A 200 whose body lacks what it must carry (a moderation answer without a verdict)."""
    # Platform API errors (adapters report these)
    MISSING_SCOPE = "missing_scope"
    NOT_IN_CHANNEL = "not_in_channel"
    CHANNEL_NOT_FOUND = "channel_not_found"
    MISSING_PERMISSION = "missing_permission"
    TOKEN_REFUSED = "token_refused"
    INCOMPLETE_RESPONSE = "incomplete_response"
    """A platform answered ok but without what the next call needs (a stream without its ts)."""
    PLATFORM_ERROR = "platform_error"


RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_NOT_RETRIED = frozenset({FailureKind.QUOTA_EXHAUSTED, FailureKind.KEY_REFUSED, FailureKind.MODEL_UNKNOWN,
                          FailureKind.CONTEXT_TOO_LONG, FailureKind.CONTENT_FILTERED})

MESSAGE_CHARS = 4000
"""Only the start of an error message is searched: bounded work whatever a server sends."""
_SAFE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_NOTHING = {"", "none", "null"}

# Markers, matched against code and type (exact, lowercased) and the message (substrings, lowercased).
_CONTENT_CODES = {"content_filter", "content_policy_violation", "responsibleaipolicyviolation", "content_filtered"}
_CONTENT_TEXT = ("contentpolicyviolation", "content_filter", "content management policy", "content_policy_violation")
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error", "context_window_exceeded"}
_CONTEXT_TEXT = ("contextwindowexceeded", "context_length_exceeded", "maximum context length", "context window",
                 "exceeds the available context size", "exceed_context_size", "prompt is too long",
                 "input is too long")
_QUOTA_CODES = {"insufficient_quota", "budget_exceeded", "quota_exceeded"}
_QUOTA_TEXT = ("insufficient_quota", "exceeded your current quota", "budget has been exceeded", "budget_exceeded")
_MODEL_CODES = {"model_not_found", "deploymentnotfound", "model_not_available", "invalid_model"}
_MODEL_TEXT = ("invalid model name", "model_not_found", "model not found", "no such model", "unknown model",
               "does not exist or you do not have access to it")
_KEY_TYPES = {"auth_error", "authentication_error", "no_db_connection", "expired_key", "token_not_found_in_db",
              "invalid_api_key", "permission_denied", "unauthorized"}
"""LiteLLM refuses a key other than its master key with a 400 `no_db_connection` when it has no key database."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed call: its kind and what the server said about it, minus any text."""

    kind: FailureKind
    status: int | None = None
    type: str | None = None
    code: str | None = None

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES and self.kind not in _NOT_RETRIED

    def details(self) -> str:
        """What the server said, minus any text: `status 401, type invalid_request_error, code invalid_api_key`."""
        return ", ".join(f"{name} {value}" for name, value in (("status", self.status), ("type", self.type),
                                                                ("code", self.code)) if value is not None)

    def describe(self) -> str:
        """For the operator's log: `key_refused (status 401, type invalid_request_error, code invalid_api_key)`."""
        details = self.details()
        return f"{self.kind} ({details})" if details else str(self.kind)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The fields of an error body, whatever its dialect; message is for matching only, never for logs."""

    type: str | None = None
    code: str | None = None
    message: str = ""


def read_error(body: bytes | str | Any) -> ErrorBody:
    """The error's type, code and message from a body in any of the dialects above (bytes, text or parsed JSON)."""
    if isinstance(body, (bytes, bytearray)):
        body = body[:65_536].decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return ErrorBody(message=body[:MESSAGE_CHARS])
    if not isinstance(body, dict):
        return ErrorBody()
    error: Any = body.get("error", body.get("detail", body))
    if isinstance(error, dict) and isinstance(error.get("error"), (dict, str)):
        error = error["error"]  # {"detail": {"error": ...}}
    if isinstance(error, str):
        return ErrorBody(_field(body.get("error_type") or body.get("type")), _field(body.get("code")), error[:MESSAGE_CHARS])
    if not isinstance(error, dict):
        return ErrorBody()
    message = error.get("message")
    text = message if isinstance(message, str) else ""
    inner = error.get("innererror") or error.get("inner_error")
    code = _field(error.get("code"))
    if isinstance(inner, dict) and _field(inner.get("code")):
        code = code if code and not code.isdigit() else _field(inner.get("code"))  # Azure's reason sits inside
    return ErrorBody(_field(error.get("type")), code, text[:MESSAGE_CHARS])


def classify(status: int | None, body: bytes | str | Any = b"", *, model: str | None = None) -> Failure:
    """The kind of failure an HTTP status and error body describe. status None: an error inside a 200 stream."""
    error = read_error(body)
    codes = {value.lower() for value in (error.type, error.code) if value}
    text = error.message.lower()

    def kind() -> FailureKind:
        if codes & _CONTENT_CODES or any(marker in text for marker in _CONTENT_TEXT):
            return FailureKind.CONTENT_FILTERED
        if codes & _CONTEXT_CODES or any(marker in text for marker in _CONTEXT_TEXT) or status == 413:
            return FailureKind.CONTEXT_TOO_LONG
        if codes & _QUOTA_CODES or any(marker in text for marker in _QUOTA_TEXT):
            return FailureKind.QUOTA_EXHAUSTED
        if (codes & _MODEL_CODES or any(code.endswith("model_access_denied") for code in codes)
                or any(marker in text for marker in _MODEL_TEXT) or _names_model(status, text, model)):
            return FailureKind.MODEL_UNKNOWN
        if codes & _KEY_TYPES or status in (401, 403):
            return FailureKind.KEY_REFUSED
        if status == 404:
            return FailureKind.MODEL_UNKNOWN
        if status == 429:
            return FailureKind.RATE_LIMITED
        if status == 408:
            return FailureKind.TIMEOUT
        if status is not None and 400 <= status < 500 and status != 409:
            return FailureKind.REJECTED
        return FailureKind.SERVER_ERROR

    return Failure(kind(), status, _loggable(error.type), _loggable(error.code))


def content_filtered_finish(reason: object) -> bool:
    """Whether a stream's finish_reason says a content filter stopped the answer (Azure, and gateways before it)."""
    return isinstance(reason, str) and reason.lower() in ("content_filter", "content_filtered")


def _names_model(status: int | None, text: str, model: str | None) -> bool:
    """A 400/422 whose message names the model asked for and talks about models: the model is the problem."""
    return (status in (400, 422) and model is not None and len(model) >= 2 and model.lower() in text
            and "model" in text.replace(model.lower(), ""))


def _field(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return None if text.lower() in _NOTHING else text


def _loggable(value: str | None) -> str | None:
    """A type or code fit for the log: a short identifier, else a placeholder (never free text)."""
    if value is None:
        return None
    return value if _SAFE.fullmatch(value) else "(not an identifier)"


# -- what the person reads ---------------------------------------------------------------------------------------

FLAGGED_INPUT_NOTICE = (
    "I can't help with that message. If you think this is a mistake, try rephrasing it or ask an admin."
)
FLAGGED_OUTPUT_NOTICE = "I stopped this answer because it may not follow this workspace's content rules."
KEY_REFUSED_NOTICE = "The bot's access to its model was refused; an admin has been told."
QUOTA_NOTICE = "The bot's model account has used up its quota, so I can't answer for now; an admin has been told."
RATE_LIMITED_NOTICE = "The model is getting too many requests right now. Please try again in a minute."
CONTEXT_NOTICE = "This conversation is too long for the model, even shortened. Please start a new thread."
REJECTED_NOTICE = "The model server rejected this request. Try rephrasing, or start a new thread."
SERVER_ERROR_NOTICE = "The model server had a problem answering. Please try again."
TIMEOUT_NOTICE = "The model took too long to answer. Please try again."
UNREACHABLE_NOTICE = "I can't reach the model server right now. Please try again in a little while."
IMAGES_REFUSED_NOTICE = ("This model can't read images. An admin can pick one that can (`/chatbot model`), "
                         "or set `CHATBOTS_VISION=off`.")
IMAGE_UNREADABLE_NOTICE = ("The model couldn't read an image in this conversation (damaged, or in a form it doesn't "
                           "take). Please start a new thread without it.")


def model_notice(kind: FailureKind, model: str, shown: bool = False, command: str = "/chatbot model") -> str:
    """What the person is told when the model call failed this way; shown: part of the answer was already shown.
    command: the one that chose this model (`/chatbot model channel` for a channel's, `/chatbot fallback`)."""
    if kind is FailureKind.MODEL_UNKNOWN:
        return (f"The model `{_shown_name(model)}` isn't available on the bot's model server. "
                f"An admin can choose another with `{command}`.")
    if kind is FailureKind.CONTENT_FILTERED:
        return FLAGGED_OUTPUT_NOTICE if shown else FLAGGED_INPUT_NOTICE
    return {
        FailureKind.KEY_REFUSED: KEY_REFUSED_NOTICE,
        FailureKind.QUOTA_EXHAUSTED: QUOTA_NOTICE,
        FailureKind.RATE_LIMITED: RATE_LIMITED_NOTICE,
        FailureKind.CONTEXT_TOO_LONG: CONTEXT_NOTICE,
        FailureKind.REJECTED: REJECTED_NOTICE,
        FailureKind.TIMEOUT: TIMEOUT_NOTICE,
        FailureKind.UNREACHABLE: UNREACHABLE_NOTICE,
        FailureKind.IMAGES_REFUSED: IMAGES_REFUSED_NOTICE,
        FailureKind.IMAGE_UNREADABLE: IMAGE_UNREADABLE_NOTICE,
    }.get(kind, SERVER_ERROR_NOTICE)


def _shown_name(model: str) -> str:
    """A model name fit to quote in chat: no backticks or line breaks, and not endless."""
    cleaned = "".join(ch for ch in model if ch.isprintable() and ch != "`")
    return cleaned[:80] or "(unnamed)"
