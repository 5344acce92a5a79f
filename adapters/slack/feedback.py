"""Slack's built-in feedback buttons on an answer, and a click on them read back as a vote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatbots.types import Vote

ACTION_ID = "chatbot_feedback"
POSITIVE = "positive"
NEGATIVE = "negative"
THANKS = {Vote.UP: "Thanks for the 👍: noted.", Vote.DOWN: "Thanks for the 👎: noted. Admins read these to improve my answers."}


def feedback_blocks() -> list[dict[str, Any]]:
    """A context_actions block with feedback_buttons: shown under the final message of an answer."""
    return [{
        "type": "context_actions",
        "elements": [{
            "type": "feedback_buttons",
            "action_id": ACTION_ID,
            "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": POSITIVE,
                                "accessibility_label": "Good answer"},
            "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": NEGATIVE,
                                "accessibility_label": "Bad answer"},
        }],
    }]


@dataclass(frozen=True, slots=True)
class Click:
    team: str
    user: str
    channel: str
    message_ts: str
    thread_ts: str | None
    vote: Vote


def read_click(body: dict[str, Any]) -> Click | None:
    """A block_actions payload from our feedback buttons as a Click; None for anything else or malformed."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    value = action.get("value")
    vote = {POSITIVE: Vote.UP, NEGATIVE: Vote.DOWN}.get(value) if isinstance(value, str) else None
    user = _field(body, "user", "id")
    team = _field(body, "team", "id") or _field(body, "user", "team_id")
    container = body.get("container") if isinstance(body.get("container"), dict) else {}
    assert isinstance(container, dict)
    channel = container.get("channel_id") or _field(body, "channel", "id")
    message_ts = container.get("message_ts") or _field(body, "message", "ts")
    thread_ts = container.get("thread_ts") or _field(body, "message", "thread_ts")
    values = (user, team, channel, message_ts)
    if vote is None or action.get("action_id") != ACTION_ID or not all(isinstance(v, str) and v for v in values):
        return None
    return Click(str(team), str(user), str(channel), str(message_ts), thread_ts if isinstance(thread_ts, str) else None, vote)


def _field(body: dict[str, Any], outer: str, inner: str) -> Any:
    value = body.get(outer)
    return value.get(inner) if isinstance(value, dict) else None
