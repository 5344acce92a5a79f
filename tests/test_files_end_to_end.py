"""Shared files end to end: files posted on the fake Slack and Discord, fetched through the real download paths,
read by the engine, sent to the fake model as content parts, with notes in the reply for what was not read."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from chatbots.config import Config
from tests.discord_rig import GENERAL, DiscordRig, discord_rig
from tests.fakes.file_hosting import ForeignHost
from tests.fakes.slack import app_mention, next_ts
from tests.files import pdf, png
from tests.slack_rig import SlackRig, slack_rig

LIMIT = 200_000
"""CHATBOTS_FILE_MAX_BYTES in these tests."""
PICTURE = png(16, 12)
DATA_URL = "data:image/png;base64," + base64.b64encode(PICTURE).decode()
REPORT = pdf(["Quarterly revenue rose by 12 percent", "Costs fell in the second half"])
NOTES = b"meeting moved to Thursday\n"
HUGE = b"x" * (LIMIT + 1)


@pytest.fixture
def limited(settings: Config) -> Config:
    return replace(settings, file_max_bytes=LIMIT)


@pytest.fixture
async def foreign() -> AsyncIterator[ForeignHost]:
    async with ForeignHost() as host:
        yield host


def last_user_content(request: dict[str, Any]) -> list[dict[str, Any]]:
    content = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    assert isinstance(content, list), "a turn with an image is sent as content parts"
    return content


def texts(parts: list[dict[str, Any]]) -> str:
    return "\n".join(part["text"] for part in parts if part["type"] == "text")


def check_the_model_read_them(parts: list[dict[str, Any]]) -> None:
    """The image as a data URL under its name, the PDF's and the text file's text headed by their names, and a
    line for each file not read."""
    assert {"type": "image_url", "image_url": {"url": DATA_URL}} in parts
    read = texts(parts)
    assert "[File: chart.png]" in read
    assert "[File: report.pdf]\nQuarterly revenue rose by 12 percent" in read and "Costs fell" in read
    assert "[File: notes.txt]\nmeeting moved to Thursday" in read
    for unread in ("archive.zip", "huge.log", "liar.txt", "evil.png"):
        assert f"[File: {unread} was shared but not read" in read, unread
    assert "internal secrets" not in read


def check_the_notes(reply: str) -> None:
    assert "archive.zip" in reply and "not a file type I can read" in reply
    assert "huge.log" in reply and "liar.txt" in reply and "CHATBOTS_FILE_MAX_BYTES" in reply
    assert "evil.png" in reply and "not fetched" in reply
    assert "chart.png" not in reply and "report.pdf" not in reply and "notes.txt" not in reply  # read: no note


async def test_files_shared_on_slack_reach_the_model_and_unread_ones_are_named(limited: Config,
                                                                                foreign: ForeignHost) -> None:
    async with slack_rig(limited, "http") as rig:
        slack = rig.slack
        evil = slack.add_file("evil.png", PICTURE, "image/png")
        evil["url_private_download"] = evil["url_private"] = f"{foreign.url}/latest/meta-data/evil.png"
        files = [
            slack.add_file("chart.png", PICTURE, "image/png"),
            slack.add_file("report.pdf", REPORT, "application/pdf"),
            slack.add_file("notes.txt", NOTES, "text/plain"),
            slack.add_file("archive.zip", b"PK\x03\x04" + bytes(100), "application/zip"),
            slack.add_file("huge.log", HUGE, "text/plain"),
            slack.add_file("liar.txt", HUGE, "text/plain", size=10),  # the event understates it
            evil,
        ]
        rig.model.queue("A red chart, a revenue report and a note.")
        ts = next_ts()
        await rig.deliver(app_mention("C1", "U1", "<@UBOT> what did I share?", ts=ts, files=files))
        [answer] = await rig.reply_in("C1", ts)

        check_the_model_read_them(last_user_content(rig.model.requests[-1]))
        check_the_notes(answer.text)
        assert answer.text.startswith("A red chart, a revenue report and a note.")
        fetched = {request.path.rsplit("/", 1)[-1] for request in slack.file_downloads}
        assert fetched == {"chart.png", "report.pdf", "notes.txt", "liar.txt"}  # not the zip, nor the declared giant
        assert {request.authorization for request in slack.file_downloads} == {"Bearer xoxb-test-token"}
        assert foreign.hits == []

        rig.model.queue("It was red.")
        await rig.mention("what colour was the chart?", thread_ts=ts)
        await rig.reply_in("C1", ts, count=2)
        earlier = [m for m in rig.model.requests[-1]["messages"] if m["role"] == "user"][0]["content"]
        assert {"type": "image_url", "image_url": {"url": DATA_URL}} in earlier, "the follow-up still sees the image"
        assert len(slack.file_downloads) == 4, "earlier files come from the database, not downloaded again"


async def test_a_slack_message_with_only_a_file_is_answered_about_it(limited: Config) -> None:
    async with slack_rig(limited, "socket") as rig:
        notes = rig.slack.add_file("notes.txt", NOTES, "text/plain")
        rig.model.queue("The meeting moved to Thursday.")
        ts = next_ts()
        await rig.deliver(app_mention("C1", "U1", "<@UBOT>", ts=ts, files=[notes]))
        [answer] = await rig.reply_in("C1", ts)

        assert answer.text == "The meeting moved to Thursday."
        sent = [m for m in rig.model.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]
        assert "[File: notes.txt]\nmeeting moved to Thursday" in sent


async def test_a_failed_answer_on_slack_still_names_the_files_not_read_each_line_in_italics(limited: Config) -> None:
    async with slack_rig(limited, "socket") as rig:
        archive = rig.slack.add_file("archive.zip", b"PK\x03\x04" + bytes(100), "application/zip")
        rig.model.queue(status=400)
        ts = next_ts()
        await rig.deliver(app_mention("C1", "U1", "<@UBOT> what's in it?", ts=ts, files=[archive]))
        [answer] = await rig.reply_in("C1", ts)

        notice, note = answer.text.split("\n\n")
        assert notice.startswith("_The model server rejected this request.") and notice.endswith("_")
        assert note.startswith("_I couldn't read archive.zip: not a file type I can read") and note.endswith("_")


async def test_files_shared_on_discord_reach_the_model_and_unread_ones_are_named(limited: Config,
                                                                                  foreign: ForeignHost) -> None:
    async with discord_rig(limited) as rig:
        rig.model.queue("A red chart, a revenue report and a note.")
        await rig.mention("what did I share?", attachments=[
            {"filename": "chart.png", "content": PICTURE, "content_type": "image/png"},
            {"filename": "report.pdf", "content": REPORT, "content_type": "application/pdf"},
            {"filename": "notes.txt", "content": NOTES},
            {"filename": "archive.zip", "content": b"PK\x03\x04" + bytes(100), "content_type": "application/zip"},
            {"filename": "huge.log", "content": HUGE, "content_type": "text/plain"},
            {"filename": "liar.txt", "content": HUGE, "size": 10},
            {"filename": "evil.png", "content": PICTURE, "content_type": "image/png",
             "url": f"{foreign.url}/latest/meta-data/evil.png"},
        ])
        assert await rig.next_outcome() == "turn:answered"

        check_the_model_read_them(last_user_content(rig.model.requests[-1]))
        [reply] = rig.fake.bot_contents(GENERAL)
        check_the_notes(reply)
        fetched = {request.path.rsplit("/", 1)[-1] for request in rig.fake.file_downloads}
        assert fetched == {"chart.png", "report.pdf", "notes.txt", "liar.txt"}
        assert {request.authorization for request in rig.fake.file_downloads} == {None}
        assert foreign.hits == []

        rig.model.queue("It was red.")
        await rig.ask("what colour was the chart?")
        earlier = [m for m in rig.model.requests[-1]["messages"] if m["role"] == "user"][0]["content"]
        assert {"type": "image_url", "image_url": {"url": DATA_URL}} in earlier, "the follow-up still sees the image"


async def test_a_discord_dm_with_only_a_file_is_answered_about_it(limited: Config) -> None:
    async with discord_rig(limited) as rig:
        rig.model.queue("The meeting moved to Thursday.")
        channel = rig.fake.dm_channel(42)
        await rig.fake.send_dm(42, "", attachments=[{"filename": "notes.txt", "content": NOTES}])
        assert await rig.next_outcome() == "turn:answered"

        assert rig.fake.bot_contents(channel) == ["The meeting moved to Thursday."]
        sent = [m for m in rig.model.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]
        assert "[File: notes.txt]\nmeeting moved to Thursday" in sent


async def test_a_failed_or_stalled_download_is_a_note_and_the_question_is_still_answered(limited: Config) -> None:
    async with slack_rig(replace(limited, file_timeout=0.3), "http") as rig:
        gone = rig.slack.add_file("gone.txt", NOTES, "text/plain")
        rig.slack.hosting.fail(gone["url_private_download"].removeprefix(rig.slack.files_url), 404)
        slow = rig.slack.add_file("slow.txt", b"y" * 50_000, "text/plain")
        rig.slack.hosting.stall_downloads()
        rig.model.queue("Answered anyway.")
        ts = next_ts()
        await rig.deliver(app_mention("C1", "U1", "<@UBOT> read these", ts=ts, files=[gone, slow]))
        [answer] = await rig.reply_in("C1", ts)

        assert answer.text.startswith("Answered anyway.")
        assert "gone.txt" in answer.text and "I couldn't download it (HTTP 404)" in answer.text
        assert "slow.txt" in answer.text and "CHATBOTS_FILE_TIMEOUT" in answer.text
