"""A Reply that records what the engine showed, for tests of the core without a platform."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingReply:
    started: int = 0
    pieces: list[str] = field(default_factory=list)
    finished: bool = False
    notice: str | None = None
    private_notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def start(self) -> None:
        self.started += 1

    async def append(self, text: str) -> None:
        self.pieces.append(text)

    async def finish(self) -> list[str]:
        self.finished = True
        return [f"reply-{id(self)}"]

    async def fail(self, notice: str) -> list[str]:
        self.notice = notice
        return []

    async def private_note(self, text: str) -> None:
        """What only the asker sees (Slack's ephemeral messages)."""
        self.private_notes.append(text)
