"""The App Home tab as Block Kit: what the bot does, the settings in force, usage; for admins the workspace's."""

from __future__ import annotations

from typing import Any

from chatbots.home import HomeReport

from .mrkdwn import escape

BARS = " ▁▂▃▄▅▆▇█"
TEXT_LIMIT = 2_900
"""Characters of a section's text (Slack allows 3,000)."""
ABOUT = ("I answer questions with an AI model. Mention me in a thread, message me directly, or open me in the "
         "assistant panel. On any message, the *Summarize thread* and *Ask about this message* shortcuts work too. "
         "Rate my answers with the 👍 / 👎 buttons under them. `/chatbot help` lists the commands.")


def home_view(report: HomeReport) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Your AI assistant"}},
        _section(ABOUT),
        {"type": "divider"},
        _section(f"*Model:* `{escape(report.model)}`"),
        _section(("*This workspace's instructions:*" if report.custom_instructions else "*Instructions (the default):*")
                 + "\n" + _quoted(report.instructions)),
        _section("*Limits in force* (daily limits reset at midnight UTC):\n"
                 f"• per person: {_cap(report.caps.user_daily, 'tokens a day')}\n"
                 f"• whole workspace: {_cap(report.caps.workspace_daily, 'tokens a day')}\n"
                 f"• rate: {_cap(report.caps.per_minute, 'requests per person per minute')}"),
        _section(f"*Your usage today:* {report.used_today:,} tokens"
                 + (f", {report.remaining_today:,} left." if report.remaining_today is not None else " (no daily cap).")),
    ]
    usage = report.workspace
    if usage is not None:
        total = sum(tokens for _, tokens in usage.days)
        votes = usage.thumbs_up + usage.thumbs_down
        ratio = f" ({usage.thumbs_up * 100 // votes}% positive)" if votes else ""
        blocks += [
            {"type": "divider"},
            {"type": "header", "text": {"type": "plain_text", "text": "Workspace (admins only)"}},
            _section(f"*Tokens per day, last {len(usage.days)} days* ({total:,} in all):\n```{chart(usage.days)}```"),
            _section("*Top users (30 days):* " + (", ".join(f"<@{user}> {tokens:,}" for user, tokens in usage.top_users)
                                                 or "nobody yet")),
            _section(f"*Feedback (30 days):* 👍 {usage.thumbs_up} · 👎 {usage.thumbs_down}{ratio}"),
        ]
    return {"type": "home", "blocks": blocks}


def chart(days: list[tuple[str, int]]) -> str:
    """One bar character per day, scaled to the busiest, with the first and last day under it."""
    if not days:
        return "(no data)"
    peak = max(tokens for _, tokens in days)
    bars = "".join(BARS[0 if not tokens else max(1, round(tokens * (len(BARS) - 1) / peak))] for _, tokens in days)
    first, last = days[0][0][5:], days[-1][0][5:]
    return f"{bars}\n{first}{' ' * max(1, len(days) - len(first) - len(last))}{last}\npeak {peak:,} tokens a day"


def _cap(value: int, unit: str) -> str:
    return f"{value:,} {unit}" if value else "no limit"


def _quoted(text: str) -> str:
    text = escape(text)
    if len(text) > TEXT_LIMIT - 200:
        text = text[: TEXT_LIMIT - 201] + "…"
    return "\n".join(f">{line}" for line in text.splitlines() or [""])


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:TEXT_LIMIT]}}
