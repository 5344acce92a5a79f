"""Shared files at the platform edge: the real slack_bolt app and discord.py client, fed real events by the fakes,
hand the engine SharedFiles whose downloads go only to the platform's own file hosts, within size and time."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from adapters.downloads import Downloader, FileHosts, file_name, readable_size
from adapters.slack.files import REFUSED_AS_LOGIN_PAGE
from adapters.slack.service import BACKFILL_FILE_MESSAGES, BACKFILL_TOO_OLD
from chatbots.config import Config
from chatbots.types import FileTooLarge, FileUnavailable, Inbound, SharedFile
from tests.discord_rig import ALICE, BOB, GENERAL, DiscordRig, discord_rig
from tests.fakes.file_hosting import ForeignHost
from tests.fakes.slack import app_mention, channel_message, dm_message, next_ts
from tests.files import png
from tests.received import Received
from tests.slack_rig import SlackRig, slack_rig

MB = 1_000_000
PICTURE = png(8, 6)


@pytest.fixture
async def foreign() -> AsyncIterator[ForeignHost]:
    """A host no download may reach: an internal address a hostile payload could name."""
    async with ForeignHost() as host:
        yield host


@pytest.fixture(params=["http", "socket"])
async def slack(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param) as rig:
        yield rig


@pytest.fixture
async def slack_http(settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, "http") as rig:
        yield rig


@pytest.fixture
async def discord(settings: Config) -> AsyncIterator[DiscordRig]:
    async with discord_rig(settings) as rig:
        yield rig


async def refusal(file: SharedFile, max_bytes: int = MB, timeout: float = 5.0) -> str:
    with pytest.raises(FileUnavailable) as refused:
        await file.download(max_bytes, timeout)
    assert isinstance(refused.value, FileTooLarge) == refused.value.reason.startswith("larger than")
    return refused.value.reason


async def slack_files(rig: SlackRig, files: list[dict[str, object]], text: str = "<@UBOT> what is this?") -> Inbound:
    """Mention the bot with these file objects; the Inbound the engine is handed. Once the turn is over, the
    download records are cleared: what follows is the test's own downloads."""
    received = Received(rig.bot.engine)
    await rig.deliver(app_mention("C1", "U1", text, ts=next_ts(), files=files))
    [inbound] = await received.wait(1)
    await rig.wait_outcomes(1)
    rig.slack.file_downloads.clear()
    return inbound


async def discord_files(rig: DiscordRig, attachments: list[dict[str, object]], text: str = "what is this?") -> Inbound:
    received = Received(rig.bot.engine)
    await rig.mention(text, attachments=attachments)
    [inbound] = await received.wait(1)
    await rig.wait_outcomes(1)
    rig.fake.file_downloads.clear()
    return inbound


# -- Slack --


async def test_a_slack_file_reaches_the_engine_and_downloads_with_the_bot_token(slack: SlackRig) -> None:
    shared = slack.slack.add_file("chart.png", PICTURE, "image/png")
    inbound = await slack_files(slack, [shared])

    [file] = inbound.files
    assert (file.name, file.mimetype, file.size) == ("chart.png", "image/png", len(PICTURE))
    assert inbound.text == "what is this?"
    assert await file.download(MB, 5.0) == PICTURE
    [request] = slack.slack.file_downloads
    assert request.path == URL(shared["url_private_download"]).raw_path  # the download URL, not the preview one
    assert request.authorization == "Bearer xoxb-test-token"
    session = slack.service.files.downloads._session
    assert session is not None and await file.download(MB, 5.0) == PICTURE
    assert slack.service.files.downloads._session is session, "one session for every download"


async def test_a_slack_message_with_only_files_is_handed_to_the_engine(slack_http: SlackRig) -> None:
    rig = slack_http
    received = Received(rig.bot.engine)
    notes = rig.slack.add_file("notes.txt", b"hello", "text/plain")
    await rig.deliver(dm_message("D1", "U1", "", files=[notes]))
    [inbound] = await received.wait(1)
    assert inbound.text == "" and [f.name for f in inbound.files] == ["notes.txt"]

    ts = await rig.mention("start a thread")
    await rig.reply_in("C1", ts)
    more = rig.slack.add_file("more.txt", b"more", "text/plain")
    await rig.deliver(channel_message("C1", "U1", "", thread_ts=ts, files=[more]))  # file_share in the bot's thread
    await received.wait(3)
    assert [f.name for f in received.inbounds[2].files] == ["more.txt"] and received.inbounds[2].text == ""


async def test_deleted_hidden_and_external_slack_files_are_named_but_never_fetched(
        slack_http: SlackRig, foreign: ForeignHost) -> None:
    rig = slack_http
    files = [rig.slack.tombstone_file(), rig.slack.tombstone_file("F0HIDDEN", "hidden_by_limit"),
             rig.slack.external_file("plan.gdoc", f"{foreign.url}/external")]
    inbound = await slack_files(rig, files)

    reasons = [await refusal(file) for file in inbound.files]
    assert reasons == ["it was deleted", "it is hidden by the workspace's file storage limit",
                       "it is stored outside Slack (an external file)"]
    assert inbound.files[2].name == "plan.gdoc"
    assert foreign.hits == [] and rig.slack.file_downloads == []


async def test_slack_connect_files_withheld_from_the_event_are_looked_up_with_files_info(slack_http: SlackRig) -> None:
    rig = slack_http
    shared = rig.slack.add_file("shared.png", PICTURE, "image/png")
    unknown = dict(rig.slack.check_file_info(shared), id="F0UNKNOWN")
    inbound = await slack_files(rig, [rig.slack.check_file_info(shared), unknown])

    found, withheld = inbound.files
    assert (found.name, found.mimetype, found.size) == ("shared.png", "image/png", len(PICTURE))
    assert await found.download(MB, 5.0) == PICTURE
    assert await refusal(withheld) == "Slack would not show it to the bot (a file from another organisation)"
    assert [call.args["file"] for call in rig.slack.calls_to("files.info")] == [shared["id"], "F0UNKNOWN"]


async def test_a_slack_file_url_on_another_host_is_never_fetched(slack_http: SlackRig, foreign: ForeignHost) -> None:
    shared = slack_http.slack.add_file("chart.png", PICTURE, "image/png")
    shared["url_private_download"] = f"{foreign.url}/files-pri/T1-F1/download/chart.png"  # same scheme, other port
    inbound = await slack_files(slack_http, [shared])

    assert await refusal(inbound.files[0]) == "not fetched: its address is not on Slack's file servers"
    assert foreign.hits == [] and slack_http.slack.file_downloads == []


async def test_slack_redirects_are_followed_only_within_slack_and_the_token_goes_nowhere_else(
        slack_http: SlackRig, foreign: ForeignHost) -> None:
    rig = slack_http
    moved = rig.slack.add_file("moved.png", PICTURE, "image/png")
    away = rig.slack.add_file("away.png", PICTURE, "image/png")
    moved_path, away_path = URL(moved["url_private_download"]).raw_path, URL(away["url_private_download"]).raw_path
    rig.slack.hosting.redirect(moved_path, URL(moved["url_private"]).raw_path)  # relative, same host
    rig.slack.hosting.redirect(away_path, f"{foreign.url}/collect")
    inbound = await slack_files(rig, [moved, away])

    assert await inbound.files[0].download(MB, 5.0) == PICTURE
    assert await refusal(inbound.files[1]) == "not fetched: it was redirected away from Slack's file servers"
    assert foreign.hits == []
    assert [r.authorization for r in rig.slack.file_downloads] == ["Bearer xoxb-test-token"] * 3


async def test_a_slack_redirect_loop_stops(slack_http: SlackRig) -> None:
    looping = slack_http.slack.add_file("loop.png", PICTURE, "image/png")
    path = URL(looping["url_private_download"]).raw_path
    slack_http.slack.hosting.redirect(path, path)
    inbound = await slack_files(slack_http, [looping])

    assert await refusal(inbound.files[0]) == "too many redirects"
    assert len(slack_http.slack.file_downloads) == 4  # the request and three redirects


async def test_slack_download_failures_are_named_404_401_and_the_login_page(slack_http: SlackRig) -> None:
    rig = slack_http
    gone = rig.slack.add_file("gone.png", PICTURE, "image/png")
    rig.slack.hosting.fail(URL(gone["url_private_download"]).raw_path, 404)
    kept = rig.slack.add_file("kept.png", PICTURE, "image/png")
    inbound = await slack_files(rig, [gone, kept])

    assert await refusal(inbound.files[0]) == "HTTP 404"
    rig.slack.revoke_token("xoxb-test-token")
    assert await refusal(inbound.files[1]) == "HTTP 401"
    rig.slack.file_login_page = True  # what real Slack answers: 200 with its sign-in page
    assert await refusal(inbound.files[1]) == REFUSED_AS_LOGIN_PAGE


async def test_a_slack_download_stops_at_the_byte_limit_even_when_the_size_is_not_declared(slack_http: SlackRig) -> None:
    rig = slack_http
    big = bytes(32 * MB)
    declared = rig.slack.add_file("declared.bin", big, "application/octet-stream", size=100)  # the event lies
    undeclared = rig.slack.add_file("chunked.bin", big, "application/octet-stream", size=100)
    inbound = await slack_files(rig, [declared, undeclared])

    assert await refusal(inbound.files[0], max_bytes=MB) == "larger than the 1 MB limit"
    first = rig.slack.file_downloads[0]
    await first.done.wait()
    assert first.sent < len(big) // 2, "refused on its Content-Length: the rest was never sent"

    rig.slack.hosting.declare_length = False
    assert await refusal(inbound.files[1], max_bytes=MB) == "larger than the 1 MB limit"
    second = rig.slack.file_downloads[1]
    await second.done.wait()
    assert second.sent < len(big) // 2, "stopped reading soon after the limit"


async def test_a_compressed_download_is_refused_since_it_could_inflate_past_any_limit(slack_http: SlackRig) -> None:
    packed = slack_http.slack.add_file("packed.txt", gzip.compress(bytes(10 * MB)), "text/plain")
    inbound = await slack_files(slack_http, [packed])
    slack_http.slack.hosting.content_encoding = "gzip"

    assert await refusal(inbound.files[0]) == "the server sent it gzip-encoded"
    assert slack_http.slack.file_downloads[0].authorization == "Bearer xoxb-test-token"


async def test_a_stalled_slack_download_times_out(slack_http: SlackRig) -> None:
    slow = slack_http.slack.add_file("slow.bin", bytes(50_000), "application/octet-stream")
    inbound = await slack_files(slack_http, [slow])
    slack_http.slack.hosting.stall_downloads()

    assert await refusal(inbound.files[0], timeout=0.2) == "the download took longer than 0.2 s"


async def test_files_in_a_thread_read_once_come_with_their_messages(slack_http: SlackRig) -> None:
    rig = slack_http
    parent = next_ts()
    earlier = rig.slack.add_file("log.txt", b"error at line 3", "text/plain")
    rig.slack.seed_thread("C1", parent, [{"user": "U2", "text": "see the log", "files": [earlier]}])
    rig.slack.add_user("U2", name="bob")
    received = Received(rig.bot.engine)
    await rig.deliver(app_mention("C1", "U1", "<@UBOT> what went wrong?", ts=next_ts(), thread_ts=parent))
    await rig.wait_outcomes(1)

    context = next(inbound for inbound in received.inbounds if inbound.message_id == parent)
    assert [f.name for f in context.files] == ["log.txt"]
    assert await context.files[0].download(MB, 5.0) == b"error at line 3"


async def test_only_the_newest_files_of_a_thread_read_once_are_fetched_older_ones_are_named(slack_http: SlackRig) -> None:
    """Each earlier message takes its turn before the answer: a long thread full of files must not delay it for minutes."""
    rig = slack_http
    parent = next_ts()
    logs = [rig.slack.add_file(f"log{n}.txt", f"error {n}".encode(), "text/plain") for n in range(BACKFILL_FILE_MESSAGES + 2)]
    rig.slack.seed_thread("C1", parent, [{"user": "U2", "text": f"log {n}", "files": [log]} for n, log in enumerate(logs)])
    rig.slack.add_user("U2", name="bob")
    received = Received(rig.bot.engine)
    await rig.deliver(app_mention("C1", "U1", "<@UBOT> what went wrong?", ts=next_ts(), thread_ts=parent))
    await rig.wait_outcomes(1)

    fetched = sorted(request.path.rsplit("/", 1)[-1] for request in rig.slack.file_downloads)
    assert fetched == [f"log{n}.txt" for n in range(2, BACKFILL_FILE_MESSAGES + 2)]
    oldest = next(inbound for inbound in received.inbounds if inbound.text == "log 0")
    assert [f.name for f in oldest.files] == ["log0.txt"]
    assert await refusal(oldest.files[0]) == BACKFILL_TOO_OLD


# -- Discord --


async def test_a_discord_attachment_reaches_the_engine_and_downloads_from_the_cdn_without_a_token(
        discord: DiscordRig) -> None:
    inbound = await discord_files(discord, [{"filename": "chart.png", "content": PICTURE, "content_type": "image/png"}])

    [file] = inbound.files
    assert (file.name, file.mimetype, file.size) == ("chart.png", "image/png", len(PICTURE))
    assert await file.download(MB, 5.0) == PICTURE
    [request] = discord.fake.file_downloads
    assert request.authorization is None and "ex=" in request.query  # the signed CDN link, as sent
    session = discord.service.files.downloads._session
    assert session is not None and await file.download(MB, 5.0) == PICTURE
    assert discord.service.files.downloads._session is session, "one session for every download"


async def test_a_discord_message_with_only_an_attachment_is_handed_to_the_engine(discord: DiscordRig) -> None:
    received = Received(discord.bot.engine)
    await discord.fake.send_dm(ALICE, "", attachments=[{"filename": "notes.txt", "content": "hello"}])
    [inbound] = await received.wait(1)

    assert inbound.text == ""
    assert [(f.name, f.mimetype) for f in inbound.files] == [("notes.txt", "text/plain; charset=utf-8")]
    await discord.fake.send_message(GENERAL, BOB, "", attachments=[{"filename": "x.txt", "content": "x"}])
    assert await discord.next_outcome() == "ignored"  # in a server, files alone do not address the bot
    assert len(received.inbounds) == 1


async def test_a_discord_attachment_url_on_another_host_is_never_fetched(discord: DiscordRig,
                                                                          foreign: ForeignHost) -> None:
    inbound = await discord_files(discord, [
        {"filename": "a.png", "content": PICTURE, "content_type": "image/png", "url": f"{foreign.url}/a.png"},
        {"filename": "b.png", "content": PICTURE, "content_type": "image/png",
         "url": "http://cdn.discordapp.com/attachments/1/2/b.png"},  # Discord's host, but not over https
    ])

    for file in inbound.files:
        assert await refusal(file) == "not fetched: its address is not on Discord's file servers"
    assert foreign.hits == [] and discord.fake.file_downloads == []


async def test_discord_download_failures_redirects_limits_and_stalls_are_named(discord: DiscordRig,
                                                                                foreign: ForeignHost) -> None:
    attachments: list[dict[str, object]] = [
        {"filename": name, "content": PICTURE, "content_type": "image/png"} for name in ("gone.png", "away.png", "big.png")
    ]
    attachments.append({"filename": "slow.bin", "content": bytes(50_000)})
    inbound = await discord_files(discord, attachments)
    gone, away, big, slow = inbound.files
    hosting = discord.fake.hosting
    paths = [path for path in hosting.blobs]
    hosting.fail(paths[0], 404)
    hosting.redirect(paths[1], f"{foreign.url}/away.png")

    assert await refusal(gone) == "HTTP 404"
    assert await refusal(away) == "not fetched: it was redirected away from Discord's file servers"
    assert await refusal(big, max_bytes=50) == "larger than the 50 bytes limit"
    hosting.stall_downloads()
    assert await refusal(slow, timeout=0.2) == "the download took longer than 0.2 s"
    assert foreign.hits == []


# -- the rules themselves --


def test_only_the_platforms_own_hosts_over_https_and_the_configured_api_origin_are_allowed() -> None:
    slack = FileHosts.of("Slack", ["files.slack.com"], None)
    assert slack.allows(URL("https://files.slack.com/files-pri/T1-F1/download/a.png"))
    assert slack.allows(URL("https://FILES.SLACK.COM:443/files-pri/T1-F1/a.png"))
    for refused in ("http://files.slack.com/a.png", "https://files.slack.com:8443/a.png",
                    "https://files.slack.com.evil.example/a.png", "https://user:pw@files.slack.com/a.png",
                    "https://slack.com/files-pri/a.png", "ftp://files.slack.com/a.png", "/files-pri/a.png",
                    "https://169.254.169.254/latest/meta-data/"):
        assert not slack.allows(URL(refused)), refused

    proxied = FileHosts.of("Slack", ["files.slack.com"], "http://127.0.0.1:8123/api/")
    assert proxied.allows(URL("http://127.0.0.1:8123/files-pri/T1-F1/a.png"))
    assert proxied.allows(URL("https://files.slack.com/a.png"))
    assert not proxied.allows(URL("http://127.0.0.1:8124/a.png"))
    assert not proxied.allows(URL("https://127.0.0.1:8123/a.png"))


async def test_a_refused_address_costs_no_request_and_no_session() -> None:
    downloads = Downloader(FileHosts.of("Discord", ["cdn.discordapp.com"], None))
    file = downloads.file("a.png", "image/png", 10, "http://127.0.0.1:1/a.png")
    assert await refusal(file) == "not fetched: its address is not on Discord's file servers"
    missing = downloads.file("b.png", "image/png", 10, None)
    assert await refusal(missing) == "Discord gave no address to download it from"
    assert downloads._session is None
    await downloads.close()


async def test_a_host_that_cannot_be_reached_is_a_short_reason() -> None:
    downloads = Downloader(FileHosts.of("Slack", ["files.slack.com"], "http://127.0.0.1:1/api/"))
    file = downloads.file("a.png", "image/png", 10, "http://127.0.0.1:1/files-pri/T1-F1/a.png")  # nothing listens
    assert await refusal(file) == "could not connect"
    await downloads.close()


async def test_a_download_after_the_service_stopped_is_refused_without_a_new_session(settings: Config) -> None:
    async with slack_rig(settings, "http") as rig:
        inbound = await slack_files(rig, [rig.slack.add_file("late.png", PICTURE, "image/png")])
        await rig.service.stop(grace=1)
        assert await refusal(inbound.files[0]) == "the bot is shutting down"
        assert rig.service.files.downloads._session is None and rig.slack.file_downloads == []


def test_file_names_from_payloads_are_printable_and_bounded() -> None:
    assert file_name("report\n\u202e.pdf\x00") == "report.pdf"
    assert len(file_name("a" * 100_000)) == 255
    assert file_name(None) == "file" and file_name("   ") == "file" and file_name(7, "fallback") == "fallback"
    assert readable_size(10 * MB) == "10 MB" and readable_size(512_000) == "512 KB" and readable_size(99) == "99 bytes"
