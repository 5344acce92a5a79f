"""Slack's HTTP endpoint checks signature headers before reading a body, and bounds what an unverified body costs.

Raw sockets against the running bot (tests.slack_rig, HTTP mode): a request line and headers are sent, and the
body only when the test says so, so "refused without reading" shows as an answer that arrives while the body
was never sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.slack.gate import MAX_BODY
from chatbots.config import Config
from tests.fakes.slack import app_mention, event_callback, next_ts, sign_request
from tests.slack_rig import SECRET, SlackRig, slack_rig

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def rig(settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, "http") as rig:
        yield rig


def well_formed(timestamp: int | None = None) -> dict[str, str]:
    """Headers that pass every check short of the HMAC: fresh, and shaped like Slack's, but forged."""
    return {"X-Slack-Request-Timestamp": str(int(time.time()) if timestamp is None else timestamp),
            "X-Slack-Signature": "v0=" + secrets.token_hex(32)}


class Raw:
    """One HTTP/1.1 request written by hand, so the test decides when (and whether) the body is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, headers: list[tuple[str | bytes, str | bytes]], *, length: int | None,
                   body: bytes = b"") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [b"POST /slack/events HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json"]
        if length is None:
            lines.append(b"Transfer-Encoding: chunked")
        else:
            lines.append(b"Content-Length: %d" % length)
        lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self, timeout: float = 5.0) -> int:
        """The response's status code, which must come within timeout seconds."""
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.startswith(b"HTTP/1.1 "), line
        return int(line.split()[1])

    async def readline_status(self, timeout: float = 5.0) -> int:
        """The status of an answer from the HTTP parser itself (it answers in HTTP/1.0 when it gave up)."""
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        return int(line.split()[1])

    def close(self) -> None:
        self.writer.close()


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def signed_mention_is_answered(rig: SlackRig, text: str) -> None:
    """A real Slack event still gets through and is answered."""
    ts = next_ts()
    body = json.dumps(event_callback("T1", app_mention("C1", "U1", f"<@UBOT> {text}", ts=ts))).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(rig.events_url, data=body, headers={"Content-Type": "application/json",
                                                                    **sign_request(SECRET, body)}) as response:
            assert response.status == 200
    await rig.wait_for_text(ts, f"echo: {text}")


async def until(condition: object, timeout: float = 5.0) -> None:
    """Wait for a state of the bot that no event announces (how many bodies it is reading)."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


NOW = "{now}"
"""Stands for the current time in a header value, filled in when the test runs."""


@pytest.mark.parametrize("headers", [
    [],
    [("X-Slack-Signature", "v0=" + "a" * 64)],
    [("X-Slack-Request-Timestamp", NOW)],
    [("X-Slack-Request-Timestamp", "abc"), ("X-Slack-Signature", "v0=" + "a" * 64)],
    [("X-Slack-Request-Timestamp", NOW), ("X-Slack-Signature", "v0=" + "A" * 64)],
    [("X-Slack-Request-Timestamp", NOW), ("X-Slack-Signature", "v1=" + "a" * 64)],
    [("X-Slack-Request-Timestamp", NOW), ("X-Slack-Signature", "v0=" + "a" * 63)],
    [("X-Slack-Request-Timestamp", "{now - 301}"), ("X-Slack-Signature", "v0=" + "a" * 64)],
    [("X-Slack-Request-Timestamp", "{now + 301}"), ("X-Slack-Signature", "v0=" + "a" * 64)],
    [("X-Slack-Request-Timestamp", NOW), ("X-Slack-Signature", "v0=" + "a" * 64)] * 2,
], ids=["none", "no-timestamp", "no-signature", "timestamp-not-digits", "uppercase-hex", "other-version",
        "short-signature", "stale", "from-the-future", "each-twice"])
async def test_missing_malformed_or_stale_signature_headers_get_401_before_the_body_is_sent(
    rig: SlackRig, headers: list[tuple[str, str]]
) -> None:
    now = int(time.time())
    headers = [(name, value.replace("{now - 301}", str(now - 301)).replace("{now + 301}", str(now + 301))
                .replace(NOW, str(now))) for name, value in headers]
    request = await Raw.open(rig.bot.port, headers, length=500_000)
    try:
        assert await request.status() == 401
    finally:
        request.close()
    assert rig.model.requests == []


async def test_a_content_length_beyond_what_slack_sends_gets_413_without_reading_the_body(rig: SlackRig) -> None:
    for length in (MAX_BODY + 1, 10**15):
        request = await Raw.open(rig.bot.port, list(well_formed().items()), length=length)
        try:
            assert await request.status() == 413
        finally:
            request.close()
    await signed_mention_is_answered(rig, "still here")


async def test_a_body_without_a_length_is_refused_once_it_grows_past_the_bound(rig: SlackRig) -> None:
    request = await Raw.open(rig.bot.port, list(well_formed().items()), length=None)
    try:
        piece = b"x" * 65536
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        for _ in range(MAX_BODY // len(piece) + 1):
            await request.send(chunk)
        assert await request.status() == 413
    finally:
        request.close()
    assert rig.service.gate is not None and rig.service.gate.reading == 0


async def test_a_body_that_trickles_in_times_out_and_frees_its_place(rig: SlackRig) -> None:
    gate = rig.service.gate
    assert gate is not None
    gate.body_timeout = 0.3
    request = await Raw.open(rig.bot.port, list(well_formed().items()), length=1000, body=b"{")
    started = time.monotonic()
    try:
        assert await request.status(timeout=5) == 408
    finally:
        request.close()
    assert 0.3 <= time.monotonic() - started < 5
    assert gate.reading == 0


async def test_unverified_bodies_are_read_a_bounded_number_at_a_time(rig: SlackRig) -> None:
    gate = rig.service.gate
    assert gate is not None
    held = [await Raw.open(rig.bot.port, list(well_formed().items()), length=100, body=b"{")
            for _ in range(gate.max_reading)]
    try:
        await until(lambda: gate.reading == gate.max_reading)
        extra = await Raw.open(rig.bot.port, list(well_formed().items()), length=100, body=b"{")
        try:
            assert await extra.status() == 503
        finally:
            extra.close()
        for request in held:  # the rest of each forged body arrives: the HMAC then refuses it
            await request.send(b" " * 99)
        assert [await request.status() for request in held] == [401] * gate.max_reading
    finally:
        for request in held:
            request.close()
    assert gate.reading == 0
    await signed_mention_is_answered(rig, "after the crowd")


async def test_150_unsigned_connections_sending_big_bodies_are_refused_and_the_bot_keeps_serving(rig: SlackRig) -> None:
    gate = rig.service.gate
    assert gate is not None
    start = b"x" * (64 * 1024)  # of a 2 MiB body: an endpoint that read bodies first would wait for the rest
    # Opened one after another (150 SYNs at once overflow the listen backlog of 128), then all held open together.
    connections = [await Raw.open(rig.bot.port, [], length=2 * 1024 * 1024) for _ in range(150)]
    try:
        sends = [asyncio.create_task(request.send(start)) for request in connections]
        statuses = await asyncio.gather(*(request.status(timeout=10) for request in connections))
        assert statuses == [401] * 150
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{rig.bot.port}/healthz") as response:
                assert response.status == 200
        await signed_mention_is_answered(rig, "through the flood")
    finally:
        for request in connections:
            request.close()
        await asyncio.gather(*sends, return_exceptions=True)


async def test_a_sender_leaving_midway_or_garbling_the_body_gets_no_traceback_in_the_log(
    rig: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    gate = rig.service.gate
    assert gate is not None
    leaving = await Raw.open(rig.bot.port, list(well_formed().items()), length=1000, body=b"{")
    await until(lambda: gate.reading == 1)
    leaving.close()
    await until(lambda: gate.reading == 0)
    garbled = await Raw.open(rig.bot.port, list(well_formed().items()), length=None, body=b"zz\r\n{}\r\n")
    try:
        assert await garbled.readline_status() == 400
    finally:
        garbled.close()
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []
    await signed_mention_is_answered(rig, "unbothered")


field_text = st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t")
"""What an HTTP field value may hold (RFC 9110 VCHAR, space, tab); other bytes are the HTTP parser's to refuse."""
header_values = (
    st.text(field_text, max_size=40)
    | st.text(alphabet="0123456789", min_size=0, max_size=5000)
    | st.from_regex(r"[ +\-]?[0-9_]{1,14}(\.[0-9]+)?[ ]?", fullmatch=True)
    | st.sampled_from(["", " ", "abc", "1e9", "0x6553f100", "-1", "99999999999999999999", "NaN"])
    | st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=10)
    .map(lambda text: text.encode())  # UTF-8 bytes are obs-text: Arabic-Indic digits, say, which int() would take
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(timestamp=header_values, signature=header_values | st.just("v0=" + "0" * 64))
@example(timestamp="abc", signature="v0=" + "0" * 64)
@example(timestamp="", signature="v0=" + "0" * 64)
@example(timestamp="9" * 5000, signature="v0=" + "0" * 64)
@example(timestamp="\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660".encode(), signature="v0=" + "0" * 64)
async def test_any_timestamp_or_signature_header_value_gets_401_never_500(
    rig: SlackRig, timestamp: str | bytes, signature: str | bytes
) -> None:
    request = await Raw.open(rig.bot.port, [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", signature)],
                             length=2, body=b"{}")
    try:
        assert await request.status() == 401
    finally:
        request.close()
