"""Turn stored history into the messages sent to the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .model import Message
from .window import StoredFile, StoredMessage

CANT_READ_IMAGES = "this model can't read images"
IMAGE_UNREADABLE = "the image could not be read"
"""Why an image was left out, in the line put in its place."""

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


def build_messages(
    instructions: str, turns: list[StoredMessage], files: Mapping[int, Sequence[StoredFile]] | None = None,
    images: bool = True, unseen_because: str = CANT_READ_IMAGES,
) -> list[Message]:
    """System instructions, then the conversation's turns oldest first.

    User turns carry the speaker's name only when more than one person speaks, so a one-to-one chat reads
    naturally while a busy thread still tells the model who asked what. Files shared with a turn follow its text
    (files: by message id); images=False puts a line in place of each image saying why (unseen_because).
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
        shared = files.get(turn.id) if files and turn.file_tokens else None
        messages.append({"role": turn.role, "content": with_files(content, shared, images, unseen_because) if shared else content})
    return messages


def with_files(text: str, files: Sequence[StoredFile], images: bool, unseen_because: str = CANT_READ_IMAGES,
               ) -> str | list[dict[str, Any]]:
    """A turn's content with its files: one string while there is no image (every OpenAI-compatible server takes
    that), content parts once there is one."""
    if not images or not any(file.kind == "image" for file in files):
        pieces = [text] if text.strip() else []
        pieces += [file.content if file.kind != "image" else unseen_image(file.name, unseen_because) for file in files]
        return "\n\n".join(pieces)
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    for file in files:
        if file.kind == "image":
            parts.append({"type": "text", "text": image_heading(file.name)})
            parts.append({"type": "image_url", "image_url": {"url": file.content}})
        else:
            parts.append({"type": "text", "text": file.content})
    return parts


def unseen_image(name: str, because: str = CANT_READ_IMAGES) -> str:
    return f"[File: {name}, an image, not shown: {because}]"


def image_heading(name: str) -> str:
    """The line naming an image just before it, so later turns can refer to it by name."""
    return f"[File: {name}]"
