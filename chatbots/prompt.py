"""Turn stored history into the messages sent to the model."""

from __future__ import annotations

from .model import Message
from .window import StoredMessage

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant taking part in a team chat. Answer clearly and concisely. "
    "When several people talk in one thread, each of their messages starts with the speaker's name."
)


def system_instructions(stored: dict[str, str], default: str | None) -> str:
    """The instructions in force: the workspace's own (else the operator's default), then the channel's on top."""
    parts = [stored.get("instructions") or default or DEFAULT_INSTRUCTIONS]
    if stored.get("channel_instructions"):
        parts.append(stored["channel_instructions"])
    return "\n\n".join(parts)


def speaker_label(name: str | None, author_id: str | None) -> str:
    return (name or author_id or "someone").replace("\n", " ")[:80]


def labelled(text: str, name: str | None, author_id: str | None) -> str:
    """A user turn as the model sees it in a multi-person thread: who said it, then what they said."""
    return f"{speaker_label(name, author_id)}: {text}"


def counted_text(turn: StoredMessage) -> str:
    """The text a stored turn's size is counted on: a user turn with its speaker's label, as long as it can get."""
    return labelled(turn.text, turn.author_name, turn.author_id) if turn.role == "user" else turn.text


def build_messages(instructions: str, turns: list[StoredMessage]) -> list[Message]:
    """System instructions, then the conversation's turns oldest first.

    User turns carry the speaker's name only when more than one person speaks, so a one-to-one chat reads
    naturally while a busy thread still tells the model who asked what.
    """
    speakers = {turn.author_id for turn in turns if turn.role == "user"}
    named = len(speakers) > 1
    names: dict[str | None, str | None] = {}
    if named:
        # One label per person: the newest real name known for them (a first message may carry only the id).
        for turn in turns:
            if turn.role == "user" and turn.author_name and turn.author_name != turn.author_id:
                names[turn.author_id] = turn.author_name
    messages: list[Message] = [{"role": "system", "content": instructions}]
    for turn in turns:
        if turn.role == "user" and named:
            content = labelled(turn.text, names.get(turn.author_id, turn.author_name), turn.author_id)
        else:
            content = turn.text
        messages.append({"role": turn.role, "content": content})
    return messages
