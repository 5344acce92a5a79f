"""The platform-free parts of the AI-app surfaces: the summary question, the home chart, the prompts grammar."""

from __future__ import annotations

import pytest

from adapters.slack.home import chart
from chatbots.suggested import DEFAULT_PROMPTS, PromptsError, from_settings, parse_prompts, to_setting
from chatbots.summaries import MAX_THREAD_CHARS, ThreadLine, summary_question


def test_a_long_thread_keeps_its_newest_messages_and_says_how_many_were_left_out() -> None:
    lines = [ThreadLine("ada", f"message {n} " + "x" * 990) for n in range(100)]
    question = summary_question(lines)
    assert len(question) <= MAX_THREAD_CHARS + 200
    assert "message 99 " in question and "message 0 " not in question
    kept = question.count("ada: ")
    assert f"({100 - kept} older messages were left out to fit.)" in question


def test_a_thread_without_text_asks_nothing() -> None:
    assert summary_question([ThreadLine("ada", "   "), ThreadLine("bob", "")]) == ""


def test_the_home_chart_draws_one_bar_per_day_scaled_to_the_busiest() -> None:
    drawn = chart([("2026-11-01", 0), ("2026-11-02", 50), ("2026-11-03", 100)])
    bars, days, peak = drawn.splitlines()
    assert bars == " ▄█" and days.startswith("11-01") and days.endswith("11-03") and peak == "peak 100 tokens a day"


def test_prompts_round_trip_and_unreadable_settings_fall_back_to_the_defaults() -> None:
    prompts = parse_prompts("Plan = Plan my day | Mail = Draft an email = politely")
    assert [(p.title, p.message) for p in prompts] == [("Plan", "Plan my day"), ("Mail", "Draft an email = politely")]
    assert from_settings({"prompts": to_setting(prompts)}) == prompts
    assert from_settings({"prompts": "not json"}) == DEFAULT_PROMPTS
    with pytest.raises(PromptsError):
        parse_prompts("A = a ||")
