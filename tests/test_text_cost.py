"""No text stalls the event loop: work on message and model text is linear in its size, and a render costs
in proportion to what is new, not to the whole answer so far."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import adapters.slack.reply as slack_reply
from adapters.discord.events import readable_text
from adapters.slack import mrkdwn
from adapters.slack.events import translate
from adapters.slack.mrkdwn import SOFT_LINE, to_mrkdwn
from adapters.slack.safe_markdown import GuardState, guard
from chatbots import paging
from chatbots.config import Config
from chatbots.redact import redactor
from tests.discord_rig import GENERAL, discord_rig
from tests.slack_rig import slack_rig

SMALL, LARGE = 20_000, 200_000


def best_time(work: Callable[[str], object], text: str, tries: int = 3) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        work(text)
        best = min(best, time.perf_counter() - started)
    return best


def assert_linear(work: Callable[[str], object], pattern: str) -> None:
    """Ten times the text may take ten times as long (forty, for noise), never a hundred; and well under a second."""
    small, large = pattern * (SMALL // len(pattern)), pattern * (LARGE // len(pattern))
    best_time(work, small, tries=1)  # warm up
    took_small, took_large = best_time(work, small), best_time(work, large, tries=2)
    assert took_large < 1.0, f"{LARGE:,} characters of {pattern!r} took {took_large:.2f} s"
    assert took_large < max(40 * took_small, 0.05), (pattern, took_small, took_large)


MODEL_PATTERNS = [
    "[", "**a ", "\x00", "`` `", "[a](http://", "<@U1|", "~~a ", "*", "a_b_", "# a\n", "- **x\n", "```\n",
    "[x](http://a(", "``a` ", "<!", "&l", "](", "@her", "<https://a", "[a][", "]: ", "\n```\n[x](y)",
]


@pytest.mark.parametrize("pattern", MODEL_PATTERNS)
def test_converting_adversarial_model_output_to_mrkdwn_takes_linear_time(pattern: str) -> None:
    assert_linear(to_mrkdwn, pattern)


@pytest.mark.parametrize("pattern", MODEL_PATTERNS)
def test_making_adversarial_model_output_safe_to_stream_takes_linear_time(pattern: str) -> None:
    assert_linear(lambda text: guard(text, 0, len(text), GuardState()), pattern)


EVENT_PATTERNS = ["<@U1|", "<@UBOT|", "<@UBOT", "<@W", "&amp;", "&#", "<!here|", "<@U1|<@U2"]


@pytest.mark.parametrize("pattern", EVENT_PATTERNS)
def test_translating_adversarial_slack_event_text_takes_linear_time(pattern: str) -> None:
    def work(text: str) -> object:
        body = {"team_id": "T1", "event": {"type": "message", "channel": "C1", "ts": "1.2", "thread_ts": "1.1",
                                           "user": "U1", "text": text}}
        return translate(body, "UBOT")

    assert_linear(work, pattern)


@pytest.mark.parametrize("pattern", ["<@!1", "<@&1", "<#1", "<a:x:1", "<:a", "<:" + "a" * 50 + ":", "<@" + "1" * 30])
def test_reading_adversarial_discord_text_takes_linear_time(pattern: str) -> None:
    def work(text: str) -> object:
        message = SimpleNamespace(content=text, mentions=[], role_mentions=[], channel_mentions=[])
        return readable_text(message, 1)

    assert_linear(work, pattern)


@pytest.mark.parametrize("pattern", [
    "eyJ-", "-----BEGIN RSA PRIVATE KEY-----\n", "-----BEGIN PRIVATE KEY-----\n" + "A" * 20 + "\n", "-----BEGIN ",
    "sk-", "a@", "x@a.b.", "a@b-", "+1 2 ", "1-", "1 ", "a.", "xoxb-", "ghp_", "AKIA",
])
def test_redacting_adversarial_text_takes_linear_time(pattern: str) -> None:
    redact = redactor(["keys", "cards", "emails", "phones"])
    assert redact is not None
    assert_linear(redact, pattern)


# -- per render: only what is new --

PROSE = "\n\n".join(f"Paragraph {n}: some **bold** words, a [link](https://example.com/{n}) and `code` " * 3 for n in range(300))


class Spy:
    """Counts the characters one of our own functions is handed, and passes the call through."""

    def __init__(self, real: Callable[..., Any], size: Callable[..., int]) -> None:
        self.real, self.size, self.characters = real, size, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.characters += self.size(*args, **kwargs)
        return self.real(*args, **kwargs)


async def test_a_posted_answer_converts_each_line_once_not_the_whole_answer_per_render(
    settings: Config, monkeypatch: pytest.MonkeyPatch,
) -> None:
    converted = Spy(mrkdwn._inline, lambda line, *a, **k: len(line))
    monkeypatch.setattr(mrkdwn, "_inline", converted)
    async with slack_rig(settings, "http", streaming_supported=False) as rig:
        rig.service.update_interval = 0.01
        rig.model.chunk_delay = 0.005
        rig.model.queue(PROSE, chunks=120)
        await rig.mention("write a lot")
        assert await rig.wait_outcomes(1, timeout=30) == ["turn:answered"]
        renders = len(rig.slack.calls_to("chat.update")) + len(rig.slack.calls_to("chat.postMessage"))
        assert renders >= 8, "enough renders that converting everything each time would show"
        assert converted.characters <= len(PROSE) + renders * SOFT_LINE, (converted.characters, renders)


async def test_a_streamed_answer_makes_each_character_safe_once(settings: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    guarded = Spy(slack_reply.guard, lambda text, start, end, state: end - start)
    monkeypatch.setattr(slack_reply, "guard", guarded)
    async with slack_rig(settings, "http") as rig:
        rig.service.update_interval = 0.01
        rig.model.chunk_delay = 0.005
        rig.model.queue(PROSE, chunks=120)
        await rig.mention("write a lot")
        assert await rig.wait_outcomes(1, timeout=30) == ["turn:answered"]
        assert len(rig.slack.calls_to("chat.appendStream")) >= 8
        assert guarded.characters <= 2 * len(PROSE)


async def test_a_discord_answer_splits_each_finished_message_once(settings: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    examined = Spy(paging.open_fence, lambda text, *a, **k: len(text))
    monkeypatch.setattr(paging, "open_fence", examined)
    async with discord_rig(settings, update_interval=0.01) as rig:
        rig.model.chunk_delay = 0.005
        rig.model.queue(PROSE, chunks=120)
        await rig.mention("write a lot")
        assert await rig.next_outcome(timeout=30) == "turn:answered"
        edits = rig.fake.calls_matching("PATCH", f"/channels/{GENERAL}/messages/")
        assert len(edits) >= 8
        assert examined.characters <= 2 * len(PROSE), examined.characters
