"""Recent conversation windows kept in memory, so a turn never re-reads its thread from disk."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_WINDOW_MESSAGES = 1000
"""No prompt carries more turns than this, whatever the model's window."""
MAX_CACHED_TOKENS = 1_000_000
NEW_COVERS = 1_048_576
"""The budget a new conversation's window is known complete for: the largest context windows (about a million tokens)."""
"""Bound on the text held across all cached windows (a few MB with its objects); least recently used go first."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    role: str
    text: str
    tokens: int
    author_id: str | None
    author_name: str | None
    exact: bool = True
    """False when tokens is an upper bound, counted before the tokenizer was loaded (see chatbots.tokens)."""
    file_tokens: int = 0
    """The size of the files shared with it (inside tokens); 0 when it has none, so no files are looked up."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file shared with a message, as the model reads it (see chatbots.attachments.FilePart)."""

    kind: str
    name: str
    mimetype: str
    content: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Window:
    messages: list[StoredMessage]
    """The newest messages that fit the budget, oldest first."""
    rough: bool
    """The budget cut older history by sizes that are only upper bounds: exact counts might fit more."""


@dataclass(slots=True)
class _Window:
    messages: deque[StoredMessage]
    tokens: int
    covers: int
    """Token budget this window is complete for: it holds every newest message that fits in it."""
    edge_exact: bool | None
    """Whether the newest message older than the held ones has an exact size; None when there is none."""


class WindowCache:
    def __init__(self, max_tokens: int = MAX_CACHED_TOKENS) -> None:
        self.max_tokens = max_tokens
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self._total = 0

    def covers(self, conversation_id: int, budget: int) -> bool:
        """Whether the cache can answer for this budget (a bigger budget may reach older, unloaded turns)."""
        window = self._windows.get(conversation_id)
        return window is not None and budget <= window.covers

    def get(self, conversation_id: int, budget: int) -> Window:
        """The newest messages fitting budget, oldest first; the caller loads first unless covers() says so."""
        window = self._windows[conversation_id]
        self._windows.move_to_end(conversation_id)
        picked: list[StoredMessage] = []
        spent = 0
        cut_at_exact = window.edge_exact
        for message in reversed(window.messages):
            spent += message.tokens
            if spent > budget or len(picked) == MAX_WINDOW_MESSAGES:
                cut_at_exact = message.exact
                break
            picked.append(message)
        picked.reverse()
        rough = cut_at_exact is not None and not (cut_at_exact and all(message.exact for message in picked))
        return Window(picked, rough)

    def append(self, conversation_id: int, message: StoredMessage) -> None:
        """Keep a cached window current with a newly stored message (uncached ones load when next needed)."""
        window = self._windows.get(conversation_id)
        if window is None:
            return
        window.messages.append(message)
        window.tokens += message.tokens
        self._total += message.tokens
        while window.messages and (window.tokens > window.covers or len(window.messages) > MAX_WINDOW_MESSAGES):
            dropped = window.messages.popleft()
            window.tokens -= dropped.tokens
            self._total -= dropped.tokens
            window.edge_exact = dropped.exact
        self._evict()

    def drop(self, conversation_id: int) -> None:
        window = self._windows.pop(conversation_id, None)
        if window is not None:
            self._total -= window.tokens

    def clear(self) -> None:
        self._windows.clear()
        self._total = 0

    def start(self, conversation_id: int) -> None:
        """Hold the window of a conversation just created: empty, so complete for any budget up to NEW_COVERS."""
        self.put(conversation_id, NEW_COVERS, [], None)

    def put(self, conversation_id: int, budget: int, rows: list[StoredMessage], edge: StoredMessage | None) -> None:
        """Hold a window loaded from disk: rows fitting budget, and the next older message if any."""
        self.drop(conversation_id)
        tokens = sum(row.tokens for row in rows)
        self._windows[conversation_id] = _Window(deque(rows), tokens, budget, None if edge is None else edge.exact)
        self._total += tokens
        self._evict()

    def _evict(self) -> None:
        while self._total > self.max_tokens and len(self._windows) > 1:
            _, oldest = self._windows.popitem(last=False)
            self._total -= oldest.tokens
