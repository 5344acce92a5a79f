"""Error bodies as servers and gateways really write them are read into the kind of failure they mean."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatbots.failure_log import FailureLog
from chatbots.failures import Failure, FailureKind, classify, model_notice

K = FailureKind

LITELLM_BAD_MODEL = {"error": {
    "message": "/chat/completions: Invalid model name passed in model=nope. Call `/v1/models` to view available models "
               "for your key.", "type": "invalid_request_error", "param": None, "code": "400",
    "provider_specific_fields": {"error": "/chat/completions: Invalid model name passed in model=nope."}}}
LITELLM_CONTEXT = {"error": {
    "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: this is a mock context window exceeded "
               "error\nmodel=small. context_window_fallbacks=None. fallbacks=None.", "type": "invalid_request_error",
    "param": None, "code": "400"}}
LITELLM_FILTERED = {"error": {
    "message": "litellm.BadRequestError: litellm.ContentPolicyViolationError: litellm.MockException: Exception: "
               "content_filter_policy\nmodel=filtered.", "type": "invalid_request_error", "param": None, "code": "400",
    "provider_specific_fields": {"innererror": None, "inner_error": None, "azure_error": None}}}

# (status, body, model asked for) -> kind. The LiteLLM bodies were recorded from its proxy (1.108) with mock models.
RECORDED: dict[str, tuple[int | None, Any, str, FailureKind]] = {
    "openai wrong key": (401, {"error": {"message": "Incorrect API key provided: sk-test.", "type": "invalid_request_error",
                                         "param": None, "code": "invalid_api_key"}}, "gpt-4o", K.KEY_REFUSED),
    "openai unknown model": (404, {"error": {"message": "The model `gpt-9` does not exist or you do not have access to it.",
                                             "type": "invalid_request_error", "param": None, "code": "model_not_found"}},
                             "gpt-9", K.MODEL_UNKNOWN),
    "openai project without the model": (403, {"error": {"message": "Project `proj_x` does not have access to model `o3`",
                                                         "type": "invalid_request_error", "param": None,
                                                         "code": "model_not_found"}}, "o3", K.MODEL_UNKNOWN),
    "openai quota": (429, {"error": {"message": "You exceeded your current quota, please check your plan.",
                                     "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}},
                     "gpt-4o", K.QUOTA_EXHAUSTED),
    "openai rate limit": (429, {"error": {"message": "Rate limit reached for gpt-4o-mini on requests per min.",
                                          "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                          "gpt-4o-mini", K.RATE_LIMITED),
    "openai context": (400, {"error": {"message": "This model's maximum context length is 128000 tokens.",
                                       "type": "invalid_request_error", "param": "messages",
                                       "code": "context_length_exceeded"}}, "gpt-4o", K.CONTEXT_TOO_LONG),
    "openai bad request": (400, {"error": {"message": "Invalid 'messages': empty array.", "type": "invalid_request_error",
                                           "param": "messages", "code": "empty_array"}}, "gpt-4o", K.REJECTED),
    "openai server error": (500, {"error": {"message": "The server had an error while processing your request.",
                                            "type": "server_error", "param": None, "code": None}}, "gpt-4o", K.SERVER_ERROR),
    "azure content filter": (400, {"error": {"message": "The response was filtered due to the prompt triggering Azure "
                                                        "OpenAI's content management policy.", "type": None, "param": "prompt",
                                             "code": "content_filter", "status": 400,
                                             "innererror": {"code": "ResponsibleAIPolicyViolation"}}},
                             "gpt-4o", K.CONTENT_FILTERED),
    "azure unknown deployment": (404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this "
                                                 "resource does not exist."}}, "prod-gpt", K.MODEL_UNKNOWN),
    "litellm key without a key database": (400, {"error": {"message": "No connected db.", "type": "no_db_connection",
                                                           "param": None, "code": "400"}}, "gpt-4o-mini", K.KEY_REFUSED),
    "litellm invalid key": (401, {"error": {"message": "Authentication Error, Invalid proxy server token passed.",
                                            "type": "auth_error", "param": "None", "code": "401"}},
                            "gpt-4o-mini", K.KEY_REFUSED),
    "litellm key not allowed the model": (401, {"error": {"message": "key not allowed to access model. This key can only "
                                                          "access models=['a']. Tried to access gpt-4o",
                                                          "type": "key_model_access_denied", "param": "model",
                                                          "code": "401"}}, "gpt-4o", K.MODEL_UNKNOWN),
    "litellm budget": (400, {"error": {"message": "Budget has been exceeded! Current cost: 10.1, Max budget: 10.0",
                                       "type": "budget_exceeded", "param": None, "code": "400"}},
                       "gpt-4o", K.QUOTA_EXHAUSTED),
    "litellm unknown model": (400, LITELLM_BAD_MODEL, "nope", K.MODEL_UNKNOWN),
    "litellm context": (400, LITELLM_CONTEXT, "small", K.CONTEXT_TOO_LONG),
    "litellm content policy": (400, LITELLM_FILTERED, "filtered", K.CONTENT_FILTERED),
    "litellm rate limit": (429, {"error": {"message": "litellm.RateLimitError: this is a mock rate limit error",
                                           "type": "throttling_error", "param": None, "code": "429"}},
                           "busy", K.RATE_LIMITED),
    "litellm server error": (500, {"error": {"message": "litellm.InternalServerError: this is a mock internal server "
                                                        "error", "type": "internal_server_error", "param": None,
                                             "code": "500"}}, "broken", K.SERVER_ERROR),
    "vllm unknown model": (404, {"object": "error", "message": "The model `llama` does not exist.", "type": "NotFoundError",
                                 "param": None, "code": 404}, "llama", K.MODEL_UNKNOWN),
    "vllm context": (400, {"object": "error", "message": "This model's maximum context length is 4096 tokens. However, "
                                                         "you requested 5000 tokens.", "type": "BadRequestError",
                           "param": None, "code": 400}, "llama", K.CONTEXT_TOO_LONG),
    "ollama unknown model": (404, {"error": "model \"llama9\" not found, try pulling it first"}, "llama9", K.MODEL_UNKNOWN),
    "llama.cpp context": (400, {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                                          "increasing it", "type": "exceed_context_size_error"}}, "local", K.CONTEXT_TOO_LONG),
    "a 400 naming the model": (400, {"error": {"message": "mistral-large is not a valid model ID",
                                               "type": "invalid_request_error", "code": None}},
                               "mistral-large", K.MODEL_UNKNOWN),
    "fastapi detail": (401, {"detail": "Not authenticated"}, "m", K.KEY_REFUSED),
    "html from a proxy": (502, b"<html><body>Bad Gateway</body></html>", "m", K.SERVER_ERROR),
    "an error event inside a stream": (None, {"error": {"message": "The server had an error.", "type": "server_error"}},
                                       "m", K.SERVER_ERROR),
    "empty body": (503, b"", "m", K.SERVER_ERROR),
    "timeout status": (408, b"", "m", K.TIMEOUT),
    "payload too large": (413, b"", "m", K.CONTEXT_TOO_LONG),
    "litellm expired key": (400, {"error": {"message": "Authentication Error - Expired Key.", "type": "expired_key",
                                            "param": None, "code": "400"}}, "m", K.KEY_REFUSED),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_recorded_error_body_is_read_as_its_kind(name: str) -> None:
    status, body, model, kind = RECORDED[name]
    assert classify(status, body, model=model).kind is kind


def test_the_log_fields_are_status_type_and_code_never_the_message() -> None:
    status, body, model, _ = RECORDED["openai wrong key"]
    failure = classify(status, body, model=model)
    assert failure.describe() == "key_refused (status 401, type invalid_request_error, code invalid_api_key)"
    litellm = classify(400, LITELLM_BAD_MODEL, model="nope")
    assert litellm.describe() == "model_unknown (status 400, type invalid_request_error, code 400)"
    free_text = classify(400, {"error": {"type": "a type with spaces: sk-secret", "code": "x" * 200}})
    assert "sk-secret" not in free_text.describe() and "x" * 65 not in free_text.describe()


def test_quota_and_refusals_are_not_retried_but_rate_limits_and_server_errors_are() -> None:
    retried = {name for name, (status, body, model, _) in RECORDED.items() if classify(status, body, model=model).retryable}
    assert retried == {"openai rate limit", "openai server error", "litellm rate limit", "litellm server error",
                       "html from a proxy", "empty body", "timeout status"}


def test_the_person_is_told_what_helps_without_internals() -> None:
    assert "`/chatbot model`" in model_notice(K.MODEL_UNKNOWN, "gpt-9") and "`gpt-9`" in model_notice(K.MODEL_UNKNOWN, "gpt-9")
    assert model_notice(K.KEY_REFUSED, "m") == "The bot's access to its model was refused; an admin has been told."
    assert "quota" in model_notice(K.QUOTA_EXHAUSTED, "m") and "rephras" not in model_notice(K.QUOTA_EXHAUSTED, "m")
    odd = model_notice(K.MODEL_UNKNOWN, "a`b\nc")
    assert "`abc`" in odd and "\n" not in odd, "a model name cannot break out of its code span"
    for kind in K:
        notice = model_notice(kind, "gpt-4o")
        assert "401" not in notice and "status" not in notice and "Traceback" not in notice


def test_repeated_failures_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]

    class Counter:
        def __init__(self) -> None:
            self.counts: dict[tuple[str, ...], int] = {}

        def labels(self, *values: str) -> Counter:
            self.counts[values] = self.counts.get(values, 0) + 1
            return self

        def inc(self) -> None: ...

    counter = Counter()
    failures = FailureLog(counter, interval=60.0, clock=lambda: now[0])
    logger = logging.getLogger("tests.failures")
    caplog.set_level(logging.WARNING, logger="tests.failures")
    failure = Failure(K.KEY_REFUSED, 401, "auth_error", "401")
    for second in (0, 1, 2, 30, 59):
        now[0] = second
        failures.report("model", failure.kind, "model call failed: %s", failure.describe(), logger=logger)
    failures.report("model", K.TIMEOUT, "model call failed: %s", "timeout", logger=logger)  # another failure: logged
    now[0] = 61
    failures.report("model", failure.kind, "model call failed: %s", failure.describe(), logger=logger)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "model call failed: key_refused (status 401, type auth_error, code 401)",
        "model call failed: timeout",
        "model call failed: key_refused (status 401, type auth_error, code 401) (4 more like this in the last 61 s)",
    ]
    assert counter.counts == {("model", "key_refused"): 6, ("model", "timeout"): 1}


def test_slack_errors_name_the_step_that_fixes_them() -> None:
    from slack_sdk.errors import SlackApiError

    from adapters.slack.errors import classify as slack_classify

    def error(**body: object) -> SlackApiError:
        return SlackApiError("failed", {"ok": False, **body})

    kind, fix = slack_classify(error(error="missing_scope", needed="chat:write"), "C1")
    assert kind is K.MISSING_SCOPE and "chat:write scope" in fix and "reinstall" in fix
    kind, fix = slack_classify(error(error="channel_not_found"), "C7")
    assert kind is K.CHANNEL_NOT_FOUND and "channel C7" in fix and "invite the bot" in fix
    kind, fix = slack_classify(error(error="invalid_auth"))
    assert kind is K.TOKEN_REFUSED and "SLACK_BOT_TOKEN" in fix and "OAuth mode, reinstall it to that workspace" in fix
    kind, fix = slack_classify(error(error="missing_scope", needed="<!channel> text"), "C1")
    assert "<!channel>" not in fix, "only identifiers from the answer reach the log"


def test_held_back_repeats_are_logged_when_the_interval_ends_even_if_failures_stop(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failures = FailureLog(interval=60.0, clock=lambda: now[0])
    logger = logging.getLogger("tests.failures")
    caplog.set_level(logging.WARNING, logger="tests.failures")
    for second in (0, 1, 2):
        now[0] = second
        failures.report("model", K.TIMEOUT, "model call failed: %s", "timeout", logger=logger)
    now[0] = 30
    assert failures.flush() == 0, "the interval has not ended"
    now[0] = 61
    assert failures.flush() == 1
    assert failures.flush() == 0, "counted once"
    now[0] = 62
    failures.report("model", K.TIMEOUT, "model call failed: %s", "timeout", logger=logger)  # within the new interval
    now[0] = 125
    failures.flush()
    assert [record.getMessage() for record in caplog.records] == [
        "model call failed: timeout",
        "model call failed: timeout (2 more like this in the last 61 s)",
        "model call failed: timeout (1 more like this in the last 64 s)",
    ]
