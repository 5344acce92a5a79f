"""Slack as an AI app, end to end over HTTP and Socket Mode: the assistant panel, feedback buttons, message
shortcuts and the App Home tab, with the events and interactive payloads Slack sends and the Web API calls."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from adapters.slack.assistant import CHANNEL_MESSAGES
from adapters.slack.safe_markdown import BREAK
from adapters.slack.shortcuts import MAX_PAGES, PAGE_SIZE
from chatbots.access import CHANNEL_OFF_NOTE, USERS_NOTE
from chatbots.engine import FLAGGED_INPUT_NOTICE, Engine
from chatbots.config import Config
from chatbots.suggested import DEFAULT_PROMPTS
from chatbots.types import ConversationKey, Outcome
from tests.fakes.slack import (
    PostedMessage,
    app_home_opened,
    assistant_thread_context_changed,
    assistant_thread_started,
    channel_message,
    dm_message,
    feedback_click,
    message_shortcut,
    next_ts,
    post_signed,
    reaction_added,
)
from tests.slack_rig import SECRET, SlackRig, slack_rig

DM = "D1"


@pytest.fixture(params=["http", "socket"])
async def rig(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param) as rig:
        rig.slack.add_user("U1", name="ada", is_admin=True)
        rig.slack.add_user("U2", name="grace")
        yield rig


@pytest.fixture(params=["http", "socket"])
async def posting_rig(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    """A workspace without native streaming: answers are posted and updated."""
    async with slack_rig(settings, request.param, streaming_supported=False) as rig:
        rig.slack.add_user("U1", name="ada", is_admin=True)
        yield rig


async def open_panel(rig: SlackRig, viewed: str | None = None) -> str:
    ts = next_ts()
    await rig.deliver(assistant_thread_started(DM, ts, "U1", viewed))
    return ts


async def ask_in_panel(rig: SlackRig, thread_ts: str, text: str) -> None:
    await rig.deliver(dm_message(DM, "U1", text, thread_ts=thread_ts))


def feedback_elements(blocks: list[Any] | None) -> list[dict[str, Any]]:
    return [element for block in blocks or [] if block.get("type") == "context_actions" for element in block["elements"]
            if element.get("type") == "feedback_buttons"]


# -- the assistant panel --


async def test_a_new_assistant_thread_offers_the_workspaces_suggested_prompts(rig: SlackRig) -> None:
    first = await open_panel(rig)
    await rig.slack.wait_for_call("assistant.threads.setSuggestedPrompts")
    shown = rig.slack.suggested_prompts[(DM, first)]["prompts"]
    assert [(p["title"], p["message"]) for p in shown] == [(p.title, p.message) for p in DEFAULT_PROMPTS]

    answer = await rig.command("prompts set Plan my day = Help me plan today | Explain = Explain this simply")
    assert "updated" in answer
    second = await open_panel(rig)
    await rig.slack.wait_for_call("assistant.threads.setSuggestedPrompts", count=2)
    assert rig.slack.suggested_prompts[(DM, second)]["prompts"] == [
        {"title": "Plan my day", "message": "Help me plan today"}, {"title": "Explain", "message": "Explain this simply"}]


async def test_a_question_in_the_panel_is_answered_in_its_thread_streamed_and_titled_once(rig: SlackRig) -> None:
    ts = await open_panel(rig)
    rig.model.queue("Tides come from the moon.", hold=True)
    await ask_in_panel(rig, ts, "How do tides work?")
    await rig.slack.wait_for_call("assistant.threads.setStatus")
    rig.model.release_held()
    [answer] = await rig.reply_in(DM, ts)
    assert answer.streamed and answer.text == "Tides come from the moon."
    assert rig.slack.titles[(DM, ts)] == "How do tides work?"
    await ask_in_panel(rig, ts, "And waves?")
    await rig.reply_in(DM, ts, count=2)
    assert len(rig.slack.calls_to("assistant.threads.setTitle")) == 1, "the title comes from the first question only"


async def test_the_viewed_channel_is_read_only_when_asked_and_only_as_a_member(rig: SlackRig) -> None:
    rig.slack.add_channel("C9", is_member=False)
    rig.slack.add_channel("C7", is_member=True)
    rig.slack.seed_thread("C7", next_ts(), [{"user": "U2", "text": "The launch moved to Tuesday"}])
    ts = await open_panel(rig, viewed="C9")
    await rig.wait_outcomes(1)

    await ask_in_panel(rig, ts, "What is the capital of France?")
    await rig.reply_in(DM, ts)
    assert not rig.slack.calls_to("conversations.history"), "a question that does not ask about the channel reads none"

    await ask_in_panel(rig, ts, "Summarize this channel")
    shown = await rig.wait_for_text(ts, "member", channel=DM)
    assert any("<#C9>" in m.text for m in shown)
    assert not rig.slack.calls_to("conversations.history") and len(rig.model.requests) == 1

    await rig.deliver(assistant_thread_context_changed(DM, ts, "U1", "C7"))
    while rig.outcomes.count(Outcome.ASSISTANT_THREAD) < 2:  # the panel's opening, and now its new channel
        await rig.wait_outcomes(len(rig.outcomes) + 1)
    await ask_in_panel(rig, ts, "Summarize this channel please")
    await rig.model.wait_for_requests(2)
    [history] = rig.slack.calls_to("conversations.history")
    assert history.args["channel"] == "C7" and int(history.args["limit"]) == CHANNEL_MESSAGES == 50
    assert "grace: The launch moved to Tuesday" in json.dumps(rig.model.requests[-1]["messages"])


async def test_a_channel_the_bot_is_switched_off_in_is_not_read_for_the_panel(rig: SlackRig) -> None:
    rig.slack.add_channel("C7", is_member=True)
    rig.slack.seed_thread("C7", next_ts(), [{"user": "U2", "text": "salaries for next year"}])
    await rig.command("channel off", channel="C7")
    ts = await open_panel(rig, viewed="C7")
    await rig.wait_outcomes(2)  # the command, the panel's opening
    await ask_in_panel(rig, ts, "Summarize this channel")
    shown = await rig.wait_for_text(ts, "won't read it", channel=DM)
    assert any("<#C7>" in m.text for m in shown)
    assert not rig.slack.calls_to("conversations.history") and not rig.model.requests


# -- feedback buttons --


async def test_a_streamed_answer_ends_with_feedback_buttons_and_a_click_is_a_private_vote(rig: SlackRig) -> None:
    ts = await rig.mention("hello")
    [answer] = await rig.reply_in("C1", ts)
    stop = rig.slack.calls_to("chat.stopStream")[-1]
    [buttons] = feedback_elements(json.loads(stop.args["blocks"]) if isinstance(stop.args["blocks"], str) else stop.args["blocks"])
    assert (buttons["positive_button"]["value"], buttons["negative_button"]["value"]) == ("positive", "negative")
    await rig.wait_outcomes(1)  # the turn has stored the answer (people click after it shows; the store may lag)

    await rig.interact(feedback_click("U2", "C1", answer.ts, "positive", thread_ts=ts))
    await rig.slack.wait_for(lambda: len(rig.slack.ephemerals) == 1, message="the thanks")
    assert rig.slack.ephemerals[0]["user"] == "U2" and "👍" in rig.slack.ephemerals[0]["text"]
    assert "👍 1 · 👎 0" in await rig.command("usage")

    await rig.interact(feedback_click("U2", "C1", answer.ts, "negative", thread_ts=ts))
    await rig.slack.wait_for(lambda: len(rig.slack.ephemerals) == 2, message="the second thanks")
    assert "👍 0 · 👎 1" in await rig.command("usage"), "a second click changes the vote, it does not add one"

    await rig.deliver(reaction_added("U1", "+1", "C1", answer.ts, "UBOT"))
    await rig.wait_outcomes(6)  # the turn, two clicks, two commands, the reaction
    assert rig.outcomes.count("feedback") == 3
    assert "👍 1 · 👎 1" in await rig.command("usage"), "reactions and buttons fill the same feedback store"


async def test_a_failure_notice_has_no_feedback_buttons(rig: SlackRig) -> None:
    await rig.command("limit rate 1")
    await rig.reply_in("C1", await rig.mention("one"))
    ts = await rig.mention("two")
    shown = await rig.reply_in("C1", ts)
    assert "limit" in shown[-1].text.lower() or "minute" in shown[-1].text.lower()
    assert not feedback_elements(shown[-1].blocks)


async def test_a_posted_answer_ends_as_slacks_own_markdown_made_safe_with_feedback_buttons(posting_rig: SlackRig) -> None:
    rig = posting_rig
    rig.model.queue("**Bold** and <!channel> and [a link](https://example.com/x)")
    ts = await rig.mention("hi")
    [answer] = await rig.slack.wait_for(lambda: [m for m in rig.slack.messages("C1") if m.blocks] or None,
                                        message="the final blocks")
    markdown, actions = answer.blocks or [], feedback_elements(answer.blocks)
    assert markdown[0]["type"] == "markdown" and markdown[0]["text"].startswith("**Bold**")
    assert "<!channel>" not in markdown[0]["text"] and f"<{BREAK}!channel>" in markdown[0]["text"]
    assert "](" not in markdown[0]["text"], "a link shows where it goes"
    assert "<!channel>" not in answer.text, "the mrkdwn fallback stays escaped too"
    assert len(actions) == 1
    await rig.wait_outcomes(1)  # the turn has stored the answer
    await rig.interact(feedback_click("U1", "C1", answer.ts, "positive", thread_ts=ts))
    await rig.slack.wait_for(lambda: rig.slack.ephemerals or None, message="the thanks")
    assert "👍 1" in await rig.command("usage")


async def test_a_long_posted_answer_keeps_mrkdwn_pages_with_the_buttons_on_the_last(posting_rig: SlackRig) -> None:
    rig = posting_rig
    rig.model.queue("\n".join(f"line {n} with *emphasis* and `code`" for n in range(400)))
    ts = await rig.mention("long please")

    def finished() -> list[PostedMessage] | None:
        mine = [m for m in rig.slack.messages("C1") if m.thread_ts == ts]
        return mine if mine and feedback_elements(mine[-1].blocks) else None

    pages = await rig.slack.wait_for(finished, message="the last page's buttons")
    assert len(pages) > 1 and all(not m.blocks for m in pages[:-1])
    sections = [b for b in pages[-1].blocks or [] if b["type"] == "section"]
    assert sections and all(b["text"]["type"] == "mrkdwn" for b in sections)
    assert "".join(b["text"]["text"] for b in sections) == pages[-1].text
    assert "_emphasis_" in pages[-1].text, "converted to mrkdwn where Slack needs it"


# -- message shortcuts --


async def test_summarize_thread_reads_every_page_and_posts_a_summary_saying_who_asked(rig: SlackRig) -> None:
    parent = next_ts()
    rig.slack.seed_thread("C1", parent, [{"user": "U2", "text": "Kickoff: we ship on Friday", "ts": parent},
                                         *({"user": "U2", "text": f"note {n}"} for n in range(250)),
                                         {"user": "U2", "text": "Last word: Friday it is"}])
    last = rig.slack.thread("C1", parent)[-1]
    await rig.interact(message_shortcut("summarize_thread", "U1", "C1", {"ts": last.ts, "thread_ts": parent,
                                                                             "user": "U2", "text": last.text}))
    shown = await rig.reply_in("C1", parent, count=2)
    assert shown[0].text == "_ada asked me to summarize this thread._"
    pages = rig.slack.calls_to("conversations.replies")
    assert len(pages) == 2 and pages[1].args["cursor"], "the thread is read page by page"
    question = rig.model.requests[-1]["messages"][-1]["content"]
    assert "Kickoff: we ship on Friday" in question and "Last word: Friday it is" in question
    assert shown[1].streamed and shown[1].text.startswith("echo: ")


async def test_shortcuts_obey_the_caps_and_the_workspaces_instructions(rig: SlackRig) -> None:
    await rig.command("instructions set Always answer in French.")
    await rig.command("limit rate 1")
    parent = next_ts()
    rig.slack.seed_thread("C1", parent, [{"user": "U2", "text": "hello", "ts": parent}])
    message = {"ts": parent, "user": "U2", "text": "hello"}
    await rig.interact(message_shortcut("summarize_thread", "U1", "C1", message))
    await rig.reply_in("C1", parent, count=2)
    assert "Always answer in French." in rig.model.requests[-1]["messages"][0]["content"]
    await rig.interact(message_shortcut("ask_about_message", "U1", "C1", message))
    shown = await rig.reply_in("C1", parent, count=3)
    assert "minute" in shown[-1].text.lower() and len(rig.model.requests) == 1


async def test_shortcuts_obey_moderation(settings: Config) -> None:
    async with slack_rig(replace(settings, moderation=True), "socket") as rig:
        rig.model.flag_words = {"forbidden-topic"}
        ts = next_ts()
        rig.slack.seed_thread("C1", ts, [{"user": "U2", "text": "let us discuss forbidden-topic", "ts": ts}])
        await rig.interact(message_shortcut("summarize_thread", "U1", "C1", {"ts": ts, "user": "U2", "text": "x"}))
        shown = await rig.wait_for_text(ts, FLAGGED_INPUT_NOTICE[:30])
        assert not rig.model.requests and not any("forbidden-topic" in m.text for m in shown)


@pytest.mark.parametrize("shortcut", ["summarize_thread", "ask_about_message"])
@pytest.mark.parametrize("rule", ["channel off", "users only U2"])
async def test_a_shortcut_from_someone_the_bot_may_not_answer_there_reads_and_posts_nothing(
        rig: SlackRig, rule: str, shortcut: str) -> None:
    rig.slack.add_user("U3", name="linus")
    await rig.command(rule)
    ts = next_ts()
    rig.slack.seed_thread("C1", ts, [{"user": "U2", "text": "the secret plan", "ts": ts}])
    await rig.interact(message_shortcut(shortcut, "U3", "C1", {"ts": ts, "user": "U2", "text": "the secret plan"}))
    if rule == "channel off":
        await rig.slack.wait_for(lambda: rig.slack.ephemerals or None, message="the private note")
        assert rig.slack.ephemerals[0]["user"] == "U3" and rig.slack.ephemerals[0]["text"] == CHANNEL_OFF_NOTE
        assert not rig.slack.messages("C1")
    else:
        [note] = await rig.wait_for_text(ts, USERS_NOTE[:20])
        assert [m.text for m in rig.slack.messages("C1")] == [note.text], "the note, and nothing said for them"
    assert not rig.slack.calls_to("conversations.replies") and not rig.model.requests
    key = ConversationKey("slack", "T1", "C1", ts)
    assert not await rig.service.engine.in_conversation(key), "nothing of the thread is kept for them"


async def test_a_summary_reads_a_bounded_number_of_pages(rig: SlackRig) -> None:
    ts = next_ts()

    def endless(call: Any) -> dict[str, Any]:
        return {"messages": [{"type": "message", "ts": ts, "user": "U2", "text": "again"}], "has_more": True,
                "response_metadata": {"next_cursor": "more"}}

    rig.slack.route("conversations.replies", endless)
    await rig.interact(message_shortcut("summarize_thread", "U1", "C1", {"ts": ts, "user": "U2", "text": "again"}))
    await rig.reply_in("C1", ts, count=2)
    assert len(rig.slack.calls_to("conversations.replies")) == MAX_PAGES and MAX_PAGES * PAGE_SIZE == 2_000


async def test_the_channel_beside_the_panel_is_known_to_every_replica(make_engine: Any) -> None:
    one, other = make_engine(), make_engine()
    assert isinstance(one, Engine)
    await one.remember_viewing("slack", "T1", "D1", "C7")
    assert await other.viewing("slack", "T1", "D1") == "C7"
    await other.remember_viewing("slack", "T1", "D1", None)
    assert await one.viewing("slack", "T1", "D1") is None


async def test_ask_about_a_message_opens_a_conversation_in_its_thread_with_it_as_context(rig: SlackRig) -> None:
    ts = next_ts()
    rig.slack.seed_thread("C1", ts, [{"user": "U2", "text": "Q3 revenue grew 12% on APAC", "ts": ts}])
    await rig.interact(message_shortcut("ask_about_message", "U1", "C1", {"ts": ts, "user": "U2",
                                                                          "text": "Q3 revenue grew 12% on APAC"}))
    [answer] = await rig.reply_in("C1", ts)
    contents = json.dumps(rig.model.requests[-1]["messages"])
    assert "Q3 revenue grew 12% on APAC" in contents and "What is this message about?" in contents
    assert answer.text.startswith("echo: ")
    await rig.deliver(channel_message("C1", "U1", "and in EMEA?", thread_ts=ts))
    replies = await rig.reply_in("C1", ts, count=2)
    assert replies[-1].text.endswith("and in EMEA?"), "the asker goes on in the thread like any conversation"


async def test_a_summary_of_a_thread_the_bot_cannot_read_is_explained_privately(rig: SlackRig) -> None:
    rig.slack.fail_next("conversations.replies", error="not_in_channel")
    await rig.interact(message_shortcut("summarize_thread", "U1", "C5", {"ts": next_ts(), "user": "U2", "text": "x"}))
    await rig.slack.wait_for(lambda: rig.slack.ephemerals or None, message="the private note")
    assert "invite me" in rig.slack.ephemerals[0]["text"] and rig.slack.ephemerals[0]["user"] == "U1"
    assert not rig.model.requests and not rig.slack.messages("C5")


# -- App Home --


async def test_the_home_tab_shows_settings_and_own_usage_and_admins_see_the_workspace(rig: SlackRig) -> None:
    await rig.deliver(app_home_opened("U2"))
    await rig.slack.wait_for(lambda: rig.slack.home_views.get("U2"), message="U2's home")
    text = json.dumps(rig.slack.home_views["U2"][-1], ensure_ascii=False)
    assert "Your usage today:* 0 tokens" in text and "admins only" not in text
    assert "Model:" in text and "Limits in force" in text

    await rig.reply_in("C1", await rig.mention("count me", user="U2"))
    await rig.wait_outcomes(2)  # the turn is done: its usage is stored
    await rig.deliver(app_home_opened("U2"))
    await rig.slack.wait_for(lambda: len(rig.slack.home_views["U2"]) == 2 or None, message="the refresh")
    assert "Your usage today:* 0 tokens" not in json.dumps(rig.slack.home_views["U2"][-1], ensure_ascii=False)

    await rig.deliver(app_home_opened("U1"))
    await rig.slack.wait_for(lambda: rig.slack.home_views.get("U1"), message="the admin's home")
    admin = json.dumps(rig.slack.home_views["U1"][-1], ensure_ascii=False)
    assert "admins only" in admin and "<@U2>" in admin and "█" in admin and "👍 0 · 👎 0" in admin


async def test_an_interactive_payload_with_a_bad_signature_is_refused(settings: Config) -> None:
    async with slack_rig(settings, "http") as rig:
        payload = feedback_click("U1", "C1", next_ts(), "positive")
        status, _ = await post_signed(None, rig.events_url, {"payload": json.dumps(payload)}, "wrong-secret",
                                      json_body=False)
        assert status == 401
        status, _ = await post_signed(None, rig.events_url, {"payload": json.dumps(payload)}, SECRET, json_body=False)
        assert status == 200


async def test_malformed_interactive_payloads_and_panel_events_are_ignored_without_a_stack_trace(
        rig: SlackRig, caplog: pytest.LogCaptureFixture) -> None:
    odd_value, odd_container = feedback_click("U1", "C1", next_ts(), "positive"), feedback_click("U1", "C1", next_ts(), "x")
    odd_value["actions"][0]["value"] = ["positive"]
    odd_container.update(container="x", message={"ts": {"a": 1}})
    odd_message = message_shortcut("summarize_thread", "U1", "C1", {"ts": next_ts()})
    odd_message["message"].update(text={"x": 1}, thread_ts=["y"], user={"id": 1})
    odd_context = assistant_thread_started(DM, next_ts(), "U1")
    odd_context["assistant_thread"]["context"] = ["C1"]
    odd_home = app_home_opened("U1")
    odd_home["user"] = ["U1"]
    with caplog.at_level(logging.INFO):
        for payload in (odd_value, odd_container, odd_message):
            await rig.interact(payload)
        for event in (odd_context, odd_home):
            await rig.deliver(event)
        await rig.wait_outcomes(5)
        await rig.reply_in("C1", await rig.mention("still there?"))
    assert rig.outcomes[:5].count(Outcome.IGNORED) == 4 and not rig.model.requests[:-1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_prompts_are_admin_only_bounded_and_audited(rig: SlackRig) -> None:
    assert "Only workspace admins" in await rig.command("prompts set A = a", user="U2")
    assert "at most 4" in await rig.command("prompts set A = a | B = b | C = c | D = d | E = e")
    assert "TITLE = MESSAGE" in await rig.command("prompts set just a title")
    assert "the limit is 75" in await rig.command(f"prompts set {'t' * 76} = m")
    assert "the limit is 1,000" in await rig.command(f"prompts set T = {'m' * 1001}")
    await rig.command("prompts set A = a")
    assert "This workspace's suggested prompts" in await rig.command("prompts", user="U2")
    assert "defaults apply again" in await rig.command("prompts clear")
    audit = await rig.service.engine.store.audit_log(("slack", "T1"))
    assert [(row["setting"], row["new_value"] is None) for row in audit[:2]] == [("prompts", True), ("prompts", False)]

