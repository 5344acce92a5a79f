"""Self-tests for tests/fakes/slack.py: the real slack_sdk and slack_bolt must work against it.

If these fail after a library upgrade, the fake no longer matches what the libraries
send or expect, and every Slack test built on it is suspect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    FakeSlack,
    app_mention,
    bot_message,
    event_callback,
    next_ts,
    post_signed,
    serve,
    sign_request,
    slash_command_form,
)

BOT_TOKEN = "xoxb-1-fake"
APP_TOKEN = "xapp-1-fake"
SECRET = "fake-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


def quiet_app(client: AsyncWebClient, **kwargs: Any) -> AsyncApp:
    logger = logging.getLogger("fake-slack-test-app")
    return AsyncApp(client=client, logger=logger, **kwargs)


# ---- Web API ---------------------------------------------------------------------------


async def test_post_update_delete_round_trip(slack: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="draft")
    assert posted["channel"] == "C1"
    assert posted["message"]["bot_id"] == "BBOT" and posted["message"]["user"] == "UBOT"
    second = await client.chat_postMessage(channel="C1", text="second")
    assert float(second["ts"]) > float(posted["ts"])

    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="final")
    assert updated["text"] == "final"

    first = slack.message("C1", posted["ts"])
    assert first.text == "final" and first.versions == ["draft", "final"]
    assert [m.text for m in slack.messages("C1")] == ["final", "second"]

    await client.chat_delete(channel="C1", ts=second["ts"])
    assert [m.text for m in slack.messages("C1")] == ["final"]

    call = slack.calls_to("chat.update")[0]
    assert call.token == BOT_TOKEN and call.args["ts"] == posted["ts"] and call.http_method == "POST"

    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"


async def test_auth_users_reactions_ephemeral_unknown(slack: FakeSlack, client: AsyncWebClient) -> None:
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")
    assert "chat:write" in auth.headers["X-OAuth-Scopes"]

    slack.add_user("U1", name="alice", is_admin=True)
    user = (await client.users_info(user="U1"))["user"]
    assert user["name"] == "alice" and user["is_admin"] and not user["is_bot"]
    with pytest.raises(SlackApiError) as unknown_user:
        await client.users_info(user="U404")
    assert unknown_user.value.response["error"] == "user_not_found"

    await client.reactions_add(channel="C1", timestamp="1700000000.000001", name="eyes")
    assert slack.reactions == [("C1", "1700000000.000001", "eyes")]
    with pytest.raises(SlackApiError) as again:
        await client.reactions_add(channel="C1", timestamp="1700000000.000001", name="eyes")
    assert again.value.response["error"] == "already_reacted"

    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert eph["message_ts"] and slack.ephemerals[0]["text"] == "only you"

    with pytest.raises(SlackApiError) as unknown:
        await client.api_call("nope.method")
    assert unknown.value.response["error"] == "unknown_method"


async def test_rate_limit_is_retried_by_sdk_handler(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel="C1", text="no retry handler")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "0"

    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    response = await client.chat_postMessage(channel="C1", text="retried")
    assert response["ok"]
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 200]
    assert [m.text for m in slack.messages("C1")] == ["retried"]


async def test_server_errors_and_error_codes(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.update", status=503)
    slack.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as outage:
        await client.chat_update(channel="C1", ts="1.1", text="x")
    assert outage.value.response.status_code == 503
    with pytest.raises(SlackApiError) as not_found:
        await client.chat_postMessage(channel="C404", text="x")
    assert not_found.value.response.status_code == 200
    assert not_found.value.response["error"] == "channel_not_found"
    assert slack.messages() == []

    slack.revoke_token(BOT_TOKEN)
    with pytest.raises(SlackApiError) as revoked:
        await client.auth_test()
    assert revoked.value.response["error"] == "token_revoked"


async def test_conversations_replies_via_get(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = next_ts()
    slack.seed_thread(
        "C1",
        parent,
        [{"user": "U1", "text": "<@UBOT> question", "ts": parent}, {"user": "U2", "text": "me too"}],
    )
    await client.chat_postMessage(channel="C1", thread_ts=parent, text="answer")

    replies = await client.conversations_replies(channel="C1", ts=parent)
    assert [m["text"] for m in replies["messages"]] == ["<@UBOT> question", "me too", "answer"]
    assert replies["messages"][0]["reply_count"] == 2
    assert replies["messages"][2]["bot_id"] == "BBOT"
    assert slack.calls_to("conversations.replies")[0].http_method == "GET"

    first_page = await client.conversations_replies(channel="C1", ts=parent, limit=2)
    assert first_page["has_more"] is True
    cursor = first_page["response_metadata"]["next_cursor"]
    second_page = await client.conversations_replies(channel="C1", ts=parent, limit=2, cursor=cursor)
    assert [m["text"] for m in second_page["messages"]] == ["answer"]

    with pytest.raises(SlackApiError) as missing:
        await client.conversations_replies(channel="C1", ts="1.000009")
    assert missing.value.response["error"] == "thread_not_found"


async def test_native_streaming_methods(slack: FakeSlack, client: AsyncWebClient) -> None:
    thread = next_ts()
    recipients = {"recipient_team_id": "T1", "recipient_user_id": "U1"}
    started = await client.chat_startStream(channel="C1", thread_ts=thread, markdown_text="Hel", **recipients)
    ts = started["ts"]
    assert started["channel"] == "C1"
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="lo")
    assert slack.message("C1", ts).text == "Hello"

    with pytest.raises(SlackApiError) as conflict:
        await client.chat_update(channel="C1", ts=ts, text="edit while streaming")
    assert conflict.value.response["error"] == "streaming_state_conflict"

    stopped = await client.chat_stopStream(channel="C1", ts=ts, markdown_text=" world")
    assert stopped["message"]["text"] == "Hello world"
    msg = slack.message("C1", ts)
    assert (msg.text, msg.thread_ts, msg.stream_state) == ("Hello world", thread, "completed")

    with pytest.raises(SlackApiError) as after_stop:
        await client.chat_appendStream(channel="C1", ts=ts, markdown_text="more")
    assert after_stop.value.response["error"] == "message_not_in_streaming_state"

    with pytest.raises(SlackApiError) as no_recipient:
        await client.chat_startStream(channel="C1", thread_ts=thread)
    assert no_recipient.value.response["error"] == "missing_recipient_team_id"
    dm = await client.chat_startStream(channel="D1", thread_ts=thread, markdown_text="dm ok")
    assert slack.message("D1", dm["ts"]).text == "dm ok"
    slack.interrupt_stream("D1", dm["ts"])  # the reader pressed stop
    with pytest.raises(SlackApiError) as stopped_by_user:
        await client.chat_appendStream(channel="D1", ts=dm["ts"], markdown_text="more")
    assert stopped_by_user.value.response["error"] == "stopped_by_user"


async def test_chat_stream_helper_sends_chunks(slack: FakeSlack, client: AsyncWebClient) -> None:
    thread = next_ts()
    streamer = await client.chat_stream(
        channel="C1", thread_ts=thread, recipient_team_id="T1", recipient_user_id="U1", buffer_size=5
    )
    await streamer.append(markdown_text="Hello, ")
    await streamer.append(markdown_text="wor")
    await streamer.stop(markdown_text="ld!")
    assert [c.method for c in slack.calls] == ["chat.startStream", "chat.stopStream"]
    assert slack.calls[0].args["chunks"] == [{"type": "markdown_text", "text": "Hello, "}]
    assert slack.message("C1", streamer.ts or "").text == "Hello, world!"
    assert slack.message("C1", streamer.ts or "").stream_mode == "chunks"


async def test_streaming_unsupported_and_status() -> None:
    async with FakeSlack(streaming_supported=False, streaming_error="not_allowed_token_type") as fake:
        c = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
        with pytest.raises(SlackApiError) as refused:
            await c.chat_startStream(channel="D1", thread_ts=next_ts(), markdown_text="x")
        assert refused.value.response["error"] == "not_allowed_token_type"
        await c.assistant_threads_setStatus(channel_id="D1", thread_ts="1.1", status="is thinking...")
        assert fake.statuses[("D1", "1.1")] == "is thinking..."


async def test_wait_for_times_out_with_recent_calls(slack: FakeSlack, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(AssertionError, match="auth.test"):
        await slack.wait_for(lambda: slack.messages(), timeout=0.05, message="a message")


async def test_latency_is_applied(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.latency = 0.03
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.03


# ---- Socket Mode with a real Bolt app ---------------------------------------------------


async def test_bolt_socket_mode_mention_ack_and_say(slack: FakeSlack, client: AsyncWebClient) -> None:
    # process_before_response: the ack follows the listener, so "no reply" is checkable.
    app = quiet_app(client, process_before_response=True)
    seen_headers: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any, request: Any) -> None:
        seen_headers.append(dict(request.headers))
        await say(text=f"hi <@{event['user']}>", thread_ts=event["ts"])

    @app.event("message")
    async def on_message(event: dict[str, Any], say: Any) -> None:
        await say(text="should never answer my own message")

    @app.command("/chatbot")
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"got {command['text']}")

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()
    try:
        assert slack.socket_connections == 1
        assert slack.calls_to("apps.connections.open")[0].token == APP_TOKEN

        mention = app_mention("C1", "U1", "<@UBOT> hello")
        envelope_id = await slack.socket_send_event(event_callback("T1", mention), retry_attempt=1,
                                                    retry_reason="timeout")
        assert await slack.wait_ack(envelope_id) is None
        reply = await slack.wait_for(lambda: slack.messages("C1"))
        assert reply[0].text == "hi <@U1>" and reply[0].thread_ts == mention["ts"]
        assert seen_headers[0]["x-slack-retry-num"] == ["1"]
        assert seen_headers[0]["x-slack-retry-reason"] == ["timeout"]
        assert len(slack.calls_to("auth.test")) == 1  # Bolt calls it lazily, once
        # The delivered mention is now part of Slack's history, followed by the reply.
        thread = await client.conversations_replies(channel="C1", ts=mention["ts"])
        assert [m["text"] for m in thread["messages"]] == ["<@UBOT> hello", "hi <@U1>"]

        own = await slack.socket_send_event(event_callback("T1", bot_message("C1", "hi <@U1>")))
        await slack.wait_ack(own)  # acked, but ignored as the bot's own event

        command = slash_command_form("T1", "U1", "C1", "ping")
        assert await slack.wait_ack(await slack.socket_send_slash_command(command)) == {"text": "got ping"}
        assert len(slack.messages("C1")) == 1
    finally:
        await handler.close_async()
    await slack.wait_for(lambda: slack.socket_connections == 0)


async def test_socket_mode_reconnects_on_disconnect(slack: FakeSlack, client: AsyncWebClient) -> None:
    handler = AsyncSocketModeHandler(quiet_app(client), APP_TOKEN)
    await handler.connect_async()
    try:
        await slack.socket_disconnect("refresh_requested")
        await slack.wait_for(lambda: slack.socket_connects == 2 and slack.socket_connections == 1)
        assert len(slack.calls_to("apps.connections.open")) == 2
    finally:
        await handler.close_async()


# ---- HTTP mode with a real Bolt app -----------------------------------------------------


def test_sign_request_matches_slack_example() -> None:
    # The worked example from Slack's "Verifying requests from Slack" guide.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    headers = sign_request("8f742231b10e8888abcd99yyyzzz85a5", body, timestamp=1531420618)
    assert headers["X-Slack-Signature"] == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


async def test_bolt_http_mode_accepts_signed_and_rejects_forged(slack: FakeSlack, client: AsyncWebClient) -> None:
    app = quiet_app(client, signing_secret=SECRET)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text="pong")

    @app.command("/chatbot")
    async def on_command(ack: Any) -> None:
        await ack("command ok")

    async with serve(app.web_app(path="/slack/events")) as base:
        url = f"{base}/slack/events"
        body = event_callback("T1", app_mention("C1", "U1", "<@UBOT> ping"))
        status, _ = await post_signed(None, url, body, SECRET)
        assert status == 200
        await slack.wait_for(lambda: [m for m in slack.messages("C1") if m.text == "pong"])

        status, text = await post_signed(None, url, slash_command_form("T1", "U1", "C1", "hi"), SECRET,
                                         json_body=False)
        assert (status, text) == (200, "command ok")

        forged, _ = await post_signed(None, url, body, "wrong-secret")
        assert forged == 401
        stale, _ = await post_signed(None, url, body, SECRET, timestamp=int(time.time()) - 600)
        assert stale == 401
    assert len(slack.messages("C1")) == 1


async def test_shared_files_are_served_to_the_bot_token_only_and_recorded(slack: FakeSlack) -> None:
    shared = slack.add_file("a.txt", b"hello", "text/plain")
    assert shared["url_private_download"].startswith(slack.files_url) and shared["size"] == 5
    async with aiohttp.ClientSession() as session:
        async with session.get(shared["url_private_download"]) as anonymous:
            assert anonymous.status == 401
        async with session.get(shared["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as ok:
            assert ok.status == 200 and await ok.read() == b"hello"
        slack.file_login_page = True  # as real Slack answers a download without a valid token
        async with session.get(shared["url_private_download"]) as page:
            assert page.status == 200 and page.content_type == "text/html"
    assert [(r.authorization, r.status) for r in slack.file_downloads] == [(None, 401), (f"Bearer {BOT_TOKEN}", 200),
                                                                           (None, 200)]
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    assert (await client.files_info(file=shared["id"]))["file"]["name"] == "a.txt"
    with pytest.raises(SlackApiError, match="file_not_found"):
        await client.files_info(file="F0NONE")
