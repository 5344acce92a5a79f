"""What the model writes reaches Slack and Discord without notifying anyone, hiding a link's target, or hanging."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.mrkdwn import MrkdwnPages, to_mrkdwn
from adapters.slack.safe_markdown import BREAK, GuardState, guard
from adapters.streaming import printable
from chatbots.config import Config
from chatbots.paging import Pager, split_message
from tests.discord_rig import GENERAL, discord_rig
from tests.slack_rig import SlackRig, slack_rig

# Any "<" in mrkdwn that does not open one of the converter's own links is a control sequence Slack would act on.
LIVE_MRKDWN = re.compile(r"<(?!https?://[^\s<>|]+>)")
# In streamed Markdown: a mention's start, an entity that could spell "<", or a broadcast word.
LIVE_MARKDOWN = re.compile(r"<@|<!(?![-\[dD])|&[#lL]|@(?:here|channel|everyone)", re.IGNORECASE)
HIDDEN_TARGET = re.compile(r"\][(\[:]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

ATTACK = (
    "Sure! [click here](http://a><!channel>) and <!here>, <!everyone>, <@U999> and <@W1|boss>, "
    "<!subteam^S123|@team>, &lt;!channel&gt;, <&#33;here> \x00\x1b[31m\r\n"
    "[docs](https://evil.example/steal) `<!channel>` **<@U2>** <https://ok.example/a?b=1&c=2>\n"
    "```\n<!here> inside code <@U3>\n```\n"
)
pieces = st.sampled_from([
    "<", ">", "!", "@", "&", "#", "[", "]", "(", ")", "`", "```", "\n", " ", "*", "**", "_", "~~", "|", "\\",
    "here", "channel", "everyone", "subteam^S1", "U999", "lt;", "#60;", "http://a", "https://b.c/d", "](",
    "\x00", "\x1b", "\r", "\x85", "\ud800", "\u200b", "é", "🙂", "x", "# ", "- ", "    ", "word " * 450,
])
model_text = st.lists(pieces, max_size=60).map("".join) | st.text(max_size=300)


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Code that loops forever fails the test instead of stalling the whole run (and keeps failing: a hang
    caught and retried, by the bot or by hypothesis, is interrupted again)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("over 60 s: something hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 60, 0.5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def streamed(text: str, cuts: list[int]) -> str:
    """The Markdown the streaming path sends for text, cut into pieces at the given places."""
    out, state, start = [], GuardState(), 0
    for end in sorted({c for c in cuts if 0 < c < len(text)} | {len(text)}):
        piece, state = guard(text, start, end, state)
        out.append(piece)
        start = end
    return "".join(out)


# -- Slack mrkdwn (posted and updated messages) --


def test_model_output_cannot_ping_a_channel_through_a_link() -> None:
    shown = to_mrkdwn("[x](http://a><!channel>)")
    assert not LIVE_MRKDWN.search(shown), shown
    assert "&lt;!channel&gt;" in shown, "the text still reads as written"


def test_no_special_mention_survives_conversion() -> None:
    shown = to_mrkdwn(ATTACK)
    assert not LIVE_MRKDWN.search(shown), shown
    assert not CONTROL.search(shown)
    assert "&lt;@U999&gt;" in shown and "&lt;!here&gt;" in shown and "&lt;!subteam^S123|@team&gt;" in shown


def test_a_link_shows_where_it_goes() -> None:
    assert to_mrkdwn("[docs](https://evil.example/steal)") == "docs (<https://evil.example/steal>)"
    assert to_mrkdwn("see [https://a.example/](https://a.example/)") == "see <https://a.example/>"
    assert to_mrkdwn("[a.example](https://a.example)") == "<https://a.example>"
    assert to_mrkdwn("<https://a.example/?x=1&y=2>") == "<https://a.example/?x=1&amp;y=2>"


def test_markdown_still_becomes_mrkdwn() -> None:
    assert to_mrkdwn("## **Plan**\n\n- use **bold**, *italic* and ~~old~~\n---") == "*Plan*\n\n• use *bold*, _italic_ and ~old~\n──────────"
    assert to_mrkdwn("```python\nif a < b:\n    pass\n```\nthen `x & y`") == "```\nif a &lt; b:\n    pass\n```\nthen `x &amp; y`"
    assert to_mrkdwn("2*3*4 stays, ***both*** works") == "2*3*4 stays, *_both_* works"


def test_a_nul_character_neither_hangs_nor_reaches_slack() -> None:
    assert to_mrkdwn("a\x00b **c\x00** `d\x00`") == "ab *c* `d`"
    assert to_mrkdwn("\x000\x00 `x` \x001\x00") == "0 `x` 1"


def test_control_characters_and_lone_surrogates_are_dropped_or_replaced() -> None:
    assert printable("a\x00b\x1b[1m\r\nc\td\x7f\x85\ud800e") == "ab[1m\nc\td\ufffde"


@settings(max_examples=300, deadline=None)
@given(model_text)
def test_no_model_output_yields_a_live_mention_in_mrkdwn(text: str) -> None:
    shown = to_mrkdwn(text)
    assert not LIVE_MRKDWN.search(shown), shown
    assert not CONTROL.search(shown)


@settings(max_examples=150, deadline=None)
@given(model_text, st.lists(st.integers(0, 400), max_size=8), st.integers(40, 400))
def test_messages_built_render_by_render_are_the_messages_of_the_whole_answer(text: str, cuts: list[int], limit: int) -> None:
    pages = MrkdwnPages(limit)
    for cut in sorted(cuts):
        for part in pages.messages(text[:cut]):
            assert not LIVE_MRKDWN.search(part) and len(part) <= limit
    assert pages.messages(text) == split_message(to_mrkdwn(text), limit)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab c\n`é")), max_size=3000), st.lists(st.integers(0, 3000), max_size=10),
       st.integers(16, 300))
def test_a_pager_fed_piece_by_piece_splits_as_split_message_does(text: str, cuts: list[int], limit: int) -> None:
    pager, fed = Pager(limit), 0
    for cut in sorted(cuts):
        pager.settle(text[fed:cut] if cut > fed else "")
        fed = max(fed, cut)
    pager.settle(text[fed:])
    assert pager.parts() == split_message(text, limit)


# -- Slack native streaming (markdown_text) --


def test_streamed_markdown_breaks_every_mention_and_keeps_the_text() -> None:
    shown = streamed(ATTACK, [])
    assert not LIVE_MARKDOWN.search(shown), shown
    assert shown.replace(BREAK, "") == ATTACK, "nothing but zero-width spaces is added"
    assert "<https://ok.example/a?b=1&c=2>" in shown, "a plain autolink stays a link"


def test_streamed_links_show_their_target_outside_code_and_code_keeps_its_brackets() -> None:
    text = "see [docs](https://evil.example) and [ref][1]\n[1]: https://evil.example\n```js\nhandlers[name](event); // <!-- a < b\n```\n"
    shown = streamed(text, [])
    prose, code = shown.split("```js\n")
    assert not HIDDEN_TARGET.search(prose), prose
    assert code == "handlers[name](event); // <!-- a < b\n```\n", "code is copied as written"


def test_a_mention_cut_across_two_streamed_pieces_is_still_broken() -> None:
    text = "ok <!here> and <@U1> now &lt;x and @channel"
    for cut in range(1, len(text)):
        shown = streamed(text, [cut])
        assert not LIVE_MARKDOWN.search(shown), (cut, shown)


@settings(max_examples=300, deadline=None)
@given(model_text, st.lists(st.integers(0, 400), max_size=6))
def test_no_model_output_yields_a_live_mention_when_streamed(text: str, cuts: list[int]) -> None:
    text = printable(text)
    shown = streamed(text, cuts)
    assert not LIVE_MARKDOWN.search(shown), shown
    assert shown.replace(BREAK, "") == text.replace(BREAK, "") or BREAK in text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["[", "]", "(", ")", ":", "x", " ", "\n", "http://a", "!"]), max_size=40).map("".join),
       st.lists(st.integers(0, 100), max_size=4))
def test_no_streamed_link_hides_its_target_outside_code(text: str, cuts: list[int]) -> None:
    assert not HIDDEN_TARGET.search(streamed(text, cuts))


# -- end to end: the real Slack app against the fake Slack --

ANSWER = (
    "Here you go: [x](http://a><!channel>) ![pixel](https://evil.example/p.png?q=secret) then <!here> and <@U999> plus a NUL:\x00 and <!subteam^S1|devs>.\n\n"
    + "\n\n".join(f"Paragraph {n}: some words to fill <@U{n}> the message <!channel>" * 3 for n in range(60))
)


def slack_output(rig: SlackRig) -> list[tuple[str, str]]:
    """(kind, text) of everything the bot sent for Slack to show."""
    shown = []
    for call in rig.slack.calls:
        if call.method in ("chat.postMessage", "chat.update") and "text" in call.args:
            shown.append(("mrkdwn", str(call.args["text"])))
        if call.method.endswith("Stream") and call.args.get("markdown_text"):
            shown.append(("markdown", str(call.args["markdown_text"])))
    return shown


def assert_nothing_live(rig: SlackRig, ts: str) -> None:
    output = slack_output(rig)
    assert output, "the bot answered"
    for kind, text in output:
        pattern = LIVE_MRKDWN if kind == "mrkdwn" else LIVE_MARKDOWN
        assert not pattern.search(text), (kind, text[:300])
        assert "\x00" not in text
    for message in rig.slack.messages("C1"):
        if message.thread_ts == ts and message.streamed:
            assert not LIVE_MARKDOWN.search(message.text), "no mention forms across streaming calls either"
    for call in rig.slack.calls_to("chat.postMessage"):
        assert call.args.get("unfurl_links") is False and call.args.get("unfurl_media") is False, "Slack fetches no model link"


async def still_responsive(rig: SlackRig) -> None:
    ts = await rig.mention("still there?")
    replies = await rig.reply_in("C1", ts)
    assert replies[-1].text == "echo: still there?"
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{rig.bot.port}/healthz") as response:
        assert response.status == 200


@pytest.mark.parametrize("streaming", [True, False], ids=["native-streaming", "post-and-update"])
async def test_a_hostile_answer_pings_no_one_and_the_bot_stays_responsive(settings: Config, streaming: bool) -> None:
    async with slack_rig(settings, "http", streaming_supported=streaming) as rig:
        rig.service.update_interval = 0.05
        rig.model.queue(ANSWER, chunks=40)
        ts = await rig.mention("write something nasty")
        assert await rig.wait_outcomes(1) == ["turn:answered"]
        replies = [m for m in rig.slack.messages("C1") if m.thread_ts == ts]
        assert len(replies) >= (1 if streaming else 2), "long enough to split on the post-and-update path"
        assert all(m.streamed == streaming for m in replies)
        assert_nothing_live(rig, ts)
        await still_responsive(rig)


@pytest.mark.parametrize("streaming", [True, False], ids=["native-streaming", "post-and-update"])
async def test_a_hostile_answer_cut_off_by_an_error_pings_no_one(settings: Config, streaming: bool) -> None:
    async with slack_rig(settings, "http", streaming_supported=streaming) as rig:
        rig.model.queue(ANSWER, chunks=40, error_after=20)
        ts = await rig.mention("fail midway")
        await rig.wait_outcomes(1)
        shown = "\n".join(m.text for m in rig.slack.messages("C1") if m.thread_ts == ts)
        assert "model" in shown.lower(), "the person is told the answer broke off"
        assert_nothing_live(rig, ts)


# -- Discord --


async def test_discord_answers_never_ping_anyone_or_preview_links_in_any_part_edit_or_notice(settings: Config) -> None:
    answer = "\n\n".join(f"Part {n}: @everyone @here <@43> <@&100> <@!42> https://evil.example/{n}.png " + "filler words " * 20 for n in range(24))
    async with discord_rig(settings, update_interval=0.05) as rig:
        rig.model.chunk_delay = 0.01
        rig.model.queue(answer, chunks=30, error_after=25)
        await rig.mention("ping them all")
        assert await rig.next_outcome() == "turn:failed"
        sent = [c for c in rig.fake.calls if c.method in ("POST", "PATCH") and c.path.startswith(f"/channels/{GENERAL}/messages")]
        assert len([c for c in sent if c.method == "POST"]) >= 2, "split into parts"
        assert any(c.method == "PATCH" for c in sent), "edited while streaming"
        for call in sent:
            allowed = call.json.get("allowed_mentions")
            assert allowed is not None and allowed.get("parse") == [] and not allowed.get("users") and not allowed.get("roles"), call
            assert allowed.get("replied_user") in (None, False)
        assert "@everyone" in rig.fake.bot_contents(GENERAL)[0], "the text shows as written"
        assert all(int(call.json.get("flags") or 0) & 4 for call in sent), "no embeds: Discord fetches no model link"
