"""Every SQL statement the bot runs, written once for both SQLite and PostgreSQL: plain blocking calls, no caches.

The statements use what the two dialects share (`?` placeholders, ON CONFLICT, RETURNING, window functions,
row values); each backend supplies how to run them (SQLDatabase._run and friends) and the few differences it
has, named on the class (BYTE_LENGTH). The bot reaches a database only through chatbots.store.Store, which runs
these calls on worker threads so the event loop never waits on the database.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..clock import Clock, iso
from ..tokens import MESSAGE_OVERHEAD
from ..types import ConversationKey
from ..window import MAX_WINDOW_MESSAGES, StoredFile, StoredMessage

log = logging.getLogger(__name__)

WINDOW_SQL = """SELECT id, role, text, tokens, author_id, author_name, tokens_exact, file_tokens, running FROM (
    SELECT newest.*, SUM(tokens) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running
    FROM (SELECT id, role, text, tokens, author_id, author_name, tokens_exact, file_tokens FROM messages
          WHERE conversation_id = ? AND status != 'streaming' ORDER BY id DESC LIMIT ?) AS newest
) AS summed WHERE running - tokens <= ? ORDER BY id"""
"""Newest rows first through the (conversation_id, id) index, summing tokens until the budget is spent; the
first row past the budget comes too (it tells whether the budget cut the history)."""

INTERRUPTED_MARK = "\n\n[This answer was interrupted.]"
PURGE_BATCH = 2000
"""Rows deleted per statement by the retention purge: each batch holds the write lock for milliseconds."""


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """What the caps see for one person in one workspace on one day, as every replica sees it."""

    user_used: int
    workspace_used: int
    user_held: int
    """Tokens reserved by this person's answers still being written (unexpired reservations)."""
    workspace_held: int
    recent: list[str]
    """This person's request times within the last minute, oldest first (only when a rate cap asked for them)."""
    spent: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    """This month's usage (user, day, model, prompt, completion), only when money budgets asked for it; other
    people's rows are summed under the user ''."""
    held_cost: list[tuple[str, str, float]] = field(default_factory=list)
    """This month's unexpired reservations' USD (user, day, cost), likewise."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one answer used, to count in usage_daily, and the cap reservation it releases (None: none was made)."""

    workspace_id: int
    user_id: str
    day: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    reservation: int | None = None


class StoreError(Exception):
    """The database cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[tuple[Any, ...]]
    rowcount: int
    columns: tuple[str, ...] = ()

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


def _stored(row: Sequence[Any]) -> StoredMessage:
    """A StoredMessage from (id, role, text, tokens, author_id, author_name, tokens_exact, file_tokens, ...)."""
    return StoredMessage(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), int(row[7]))


class SQLDatabase(ABC):
    """The bot's statements over one database; subclasses say how to run a statement."""

    BYTE_LENGTH = "length(CAST({} AS BLOB))"
    """SQL for the UTF-8 byte length of a text expression."""
    WORKSPACE_LOCK: str | None = None
    """SQL taking a lock on one workspace's caps until the transaction ends, or None when one process owns the
    database (SQLite: the write transaction is enough)."""
    shared = False
    """True when several processes may use the database at once (no process may trust a cache of its rows)."""
    workers = 1
    """Threads the Store may run calls on at once."""
    errors: tuple[type[Exception], ...] = ()
    """What the driver raises when the database cannot be used (locked, gone, full)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.statements = 0
        """Statements sent (each _run, each _run_many, each transaction opened): the benchmark's round-trip count.
        Unlocked, so concurrent threads may lose a count; never read for decisions."""

    # -- how a backend runs statements --

    @abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement (committed unless a transaction is open) and fetch what it returns."""

    @abstractmethod
    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row, committed together."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Statements run inside commit together, or not at all."""

    @abstractmethod
    def close(self) -> None: ...

    migrated: list[str] = []
    """The migrations applied when this process opened the database (the others were applied before)."""

    @abstractmethod
    def applied_migrations(self) -> tuple[list[str], list[str]]:
        """(applied, pending) migration names."""

    turn_locks: Any = None
    """The backend's locks on conversation turns across processes (chatbots.store.postgres.TurnLocks), or None
    when one process owns the database."""

    def ping(self) -> None:
        """Raise unless the database answers."""
        self._run("SELECT 1")

    def _now(self) -> str:
        return iso(self.clock())

    # -- statements that change what conversations' windows show --

    def _window_rows(self, conversation_id: int, token_budget: int) -> tuple[list[tuple[Any, ...]], int | None]:
        """WINDOW_SQL's rows, and the window version they reflect (None: this database's windows carry none)."""
        return self._run(WINDOW_SQL, [conversation_id, MAX_WINDOW_MESSAGES + 1, token_budget]).rows, None

    def _changed_rows(
        self, dml: str, params: Sequence[Any], returning: str, also: Callable[[str], tuple[str, list[Any]] | None] | None = None,
        besides: Sequence[tuple[str, list[Any]]] = (),
    ) -> list[tuple[Any, ...]]:
        """Run an INSERT, UPDATE or DELETE of messages that changes what a window shows; for each row changed, the
        `returning` columns and then the conversation's window version after the change (None here: one process
        owns the database and keeps its windows current by its own writes; PostgreSQL bumps versions).

        also: given an SQL condition, a statement (or None) writing only where the condition holds; it runs when
        the change touched a row (PostgreSQL: in the same statement, the condition saying whether it did).
        besides: statements that run whatever the change touched (PostgreSQL: in the same statement too)."""
        with self.transaction() if besides else contextlib.nullcontext():
            rows = [(*row, None) for row in self._run(f"{dml} RETURNING {returning}", params).rows]
            statement = also("1 = 1") if rows and also is not None else None
            if statement is not None:
                self._run(*statement)
            for extra in besides:
                self._run(*extra)
        return rows

    def _changed_count(self, dml: str, params: Sequence[Any]) -> int:
        """Like _changed_rows, for bulk changes: how many rows changed."""
        return self._run(dml, params).rowcount

    def query_dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dictionaries by column name (the operator reports)."""
        result = self._run(sql, params)
        return [dict(zip(result.columns, row)) for row in result.rows]

    # -- ids --

    def workspace_id(self, platform: str, external_id: str) -> int:
        """The workspace's row id, created on first sight."""
        found = self._run(
            "INSERT INTO workspaces (platform, external_id, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, external_id) DO NOTHING RETURNING id",
            [platform, external_id, self._now()],
        ).one() or self._run(
            "SELECT id FROM workspaces WHERE platform = ? AND external_id = ?", [platform, external_id]
        ).one()
        assert found is not None
        return int(found[0])

    def conversation_id(self, key: ConversationKey) -> int:
        """The conversation's row id, created (with its workspace) on first sight."""
        return self.find_conversation(key, self.workspace_id(key.platform, key.workspace))[0]

    def find_conversation(self, key: ConversationKey, workspace_id: int) -> tuple[int, bool]:
        """The conversation's row id in a known workspace, and whether it was created just now (so it is empty):
        one statement for a new thread, the first message of most conversations."""
        created = self._run(
            "INSERT INTO conversations (workspace_id, channel, thread, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (workspace_id, channel, thread) DO NOTHING RETURNING id",
            [workspace_id, key.channel, key.thread, self._now()],
        ).one()
        if created is not None:
            return int(created[0]), True
        found = self._run(
            "SELECT id FROM conversations WHERE workspace_id = ? AND channel = ? AND thread = ?",
            [workspace_id, key.channel, key.thread],
        ).one()
        assert found is not None
        return int(found[0]), False

    def has_conversation(self, key: ConversationKey) -> bool:
        """Whether the bot has stored anything for this thread (without creating it)."""
        return self._run(
            "SELECT 1 FROM conversations c JOIN workspaces w ON w.id = c.workspace_id "
            "WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? AND c.thread = ?",
            [key.platform, key.workspace, key.channel, key.thread],
        ).one() is not None

    def has_message(self, conversation_id: int, platform_id: str) -> bool:
        """Whether a person's message with this platform id is stored in the conversation (a redelivery)."""
        return self._run(
            "SELECT 1 FROM messages WHERE conversation_id = ? AND platform_id = ? AND role = 'user'",
            [conversation_id, platform_id],
        ).one() is not None

    # -- a turn's messages --

    def add_message(self, conversation_id: int, role: str, text: str, tokens: int, **fields: Any) -> int | None:
        """Store one turn; None when this platform message was stored before (a redelivery, or the same message
        delivered twice under two event types: the unique (conversation, platform id) key decides, across processes).
        The keyword fields are add_message_versioned's."""
        return self.add_message_versioned(conversation_id, role, text, tokens, **fields)[0]

    def add_message_versioned(
        self,
        conversation_id: int,
        role: str,
        text: str,
        tokens: int,
        *,
        author_id: str | None = None,
        author_name: str | None = None,
        platform_id: str | None = None,
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        status: str = "ok",
        exact: bool = True,
        files: Sequence[StoredFile] = (),
    ) -> tuple[int | None, int | None]:
        """add_message, and the conversation's window version after it (None where windows carry no versions).

        exact=False marks tokens as an upper bound (counted before the tokenizer was needed). files: shared with
        the message, stored with it in one transaction; their tokens must be inside tokens."""
        insert = functools.partial(self._changed_rows, *self._message_insert(
            conversation_id, role, text, tokens, author_id=author_id, author_name=author_name, platform_id=platform_id,
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, status=status, exact=exact,
            file_tokens=sum(file.tokens for file in files),
        ), "id")
        if not files:
            rows = insert()
        else:
            with self.transaction():
                rows = insert()
                for position, file in enumerate(files if rows else ()):
                    self._run(
                        "INSERT INTO message_files (message_id, position, kind, name, mimetype, content, tokens) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [rows[0][0], position, file.kind, file.name, file.mimetype, file.content, file.tokens],
                    )
        return (None, None) if not rows else (int(rows[0][0]), rows[0][1])

    def _message_insert(
        self, conversation_id: int, role: str, text: str, tokens: int, *, author_id: str | None = None,
        author_name: str | None = None, platform_id: str | None = None, model: str | None = None,
        prompt_tokens: int | None = None, completion_tokens: int | None = None, status: str = "ok", exact: bool = True,
        file_tokens: int = 0,
    ) -> tuple[str, list[Any]]:
        """The INSERT of one message (nothing when its platform id was stored before), without RETURNING."""
        return (
            "INSERT INTO messages (conversation_id, role, text, tokens, tokens_exact, file_tokens, author_id, "
            "author_name, platform_id, model, prompt_tokens, completion_tokens, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [conversation_id, role, text, tokens, int(exact), file_tokens, author_id, author_name, platform_id, model,
             prompt_tokens, completion_tokens, status, self._now()],
        )

    def message_files(self, message_ids: Sequence[int]) -> dict[int, list[StoredFile]]:
        """The files shared with these messages, in the order they were shared (only asked for messages that have
        some: see StoredMessage.file_tokens)."""
        found: dict[int, list[StoredFile]] = {}
        if not message_ids:
            return found
        rows = self._run(
            "SELECT message_id, kind, name, mimetype, content, tokens FROM message_files "
            f"WHERE message_id IN ({', '.join('?' for _ in message_ids)}) ORDER BY message_id, position",
            list(message_ids),
        ).rows
        for message_id, kind, name, mimetype, content, tokens in rows:
            found.setdefault(int(message_id), []).append(StoredFile(kind, name, mimetype, content, int(tokens)))
        return found

    def begin_answer(self, conversation_id: int, model: str) -> int:
        """A row for an answer about to stream; kept out of history until complete_answer."""
        now = self._now()
        row = self._run(
            "INSERT INTO messages (conversation_id, role, text, tokens, model, status, created_at, updated_at) "
            "VALUES (?, 'assistant', '', 0, ?, 'streaming', ?, ?) RETURNING id",
            [conversation_id, model, now, now],
        ).one()
        assert row is not None
        return int(row[0])

    def add_question_versioned(
        self, conversation_id: int, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int | None, int | None, int | None]:
        """add_message_versioned for a person's message, and with answer_model the row of the answer it will get
        (begin_answer), so a question to answer costs one round trip: (message id or None for a redelivery, window
        version, answer row id or None)."""
        message_id, version = self.add_message_versioned(conversation_id, "user", text, tokens, **fields)
        answer = self.begin_answer(conversation_id, answer_model) if message_id is not None and answer_model else None
        return message_id, version, answer

    def add_first_question(
        self, key: ConversationKey, workspace_id: int, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int, bool, int | None, int | None, int | None]:
        """add_question_versioned in a conversation found or created on the way: (conversation id, created just now,
        message id or None for a redelivery, window version, answer row or None)."""
        conversation, created = self.find_conversation(key, workspace_id)
        return (conversation, created, *self.add_question_versioned(conversation, text, tokens, answer_model, **fields))

    def save_partial(self, message_id: int, text: str) -> None:
        """The shown text so far, and a fresh lease: a streaming row not updated for a while was cut off."""
        self._run("UPDATE messages SET text = ?, updated_at = ? WHERE id = ?", [text, self._now(), message_id])

    def complete_answer(
        self, message_id: int, text: str, tokens: int, *, status: str, exact: bool = True,
        platform_id: str | None = None, usage: tuple[int, int] | None = None,
    ) -> int | None:
        """Finish an answer row: its text becomes history; an answer with nothing shown leaves no row.

        Returns the conversation id when the answer was kept."""
        return self.complete_answer_versioned(
            message_id, text, tokens, status=status, exact=exact, platform_id=platform_id, usage=usage
        )[0]

    def complete_answer_versioned(
        self, message_id: int, text: str, tokens: int, *, status: str, exact: bool = True,
        platform_id: str | None = None, usage: tuple[int, int] | None = None,
        reply_parts: tuple[int, list[str]] | None = None, counted: UsageRecord | None = None,
    ) -> tuple[int | None, int | None]:
        """complete_answer, and the conversation's window version after it (None where windows carry no versions).

        reply_parts: (workspace id, platform ids) to record as record_reply_parts does, when the answer is kept.
        counted: the answer's usage to count, and its reservation to release, as settle_reservation does (PostgreSQL:
        in the same statement)."""
        besides = self._settle_sql(counted) if counted is not None else []
        if not text.strip():
            with self.transaction():
                self._run("DELETE FROM messages WHERE id = ?", [message_id])  # a streaming row: never in a window
                for extra in besides:
                    self._run(*extra)
            return None, None
        prompt_tokens, completion_tokens = usage or (None, None)
        rows = self._changed_rows(
            "UPDATE messages SET text = ?, tokens = ?, tokens_exact = ?, status = ?, platform_id = ?, prompt_tokens = ?, "
            "completion_tokens = ?, updated_at = ? WHERE id = ?",
            [text, tokens, int(exact), status, platform_id, prompt_tokens, completion_tokens, self._now(), message_id],
            "conversation_id",
            functools.partial(self._reply_parts_sql, reply_parts[0], message_id, reply_parts[1]) if reply_parts else None,
            besides,
        )
        return (None, None) if not rows else (int(rows[0][0]), rows[0][1])

    def recover_interrupted(self, idle_since: str | None = None, conversation_id: int | None = None) -> int:
        """Answers left 'streaming' become 'interrupted', marked so in the text the model reads.

        idle_since: only rows not updated since then (another process may still be streaming the rest); None
        takes every streaming row, which only the one process that answers from a SQLite file may do, or a turn
        holding its conversation's lock (conversation_id: only that conversation's rows).
        """
        # The partial text was saved without a size: give it an upper bound (its bytes), counted for real if it matters.
        marked = "CASE WHEN text = '' THEN ? ELSE text || ? END"
        sql = (
            f"UPDATE messages SET status = 'interrupted', text = {marked}, "
            f"tokens = {self.BYTE_LENGTH.format(marked)} + ?, tokens_exact = 0 WHERE status = 'streaming'"
        )
        params: list[Any] = [INTERRUPTED_MARK.strip(), INTERRUPTED_MARK, INTERRUPTED_MARK.strip(), INTERRUPTED_MARK,
                             MESSAGE_OVERHEAD]
        if idle_since is not None:
            sql += " AND (updated_at IS NULL OR updated_at < ?)"
            params.append(idle_since)
        if conversation_id is not None:
            sql += " AND conversation_id = ?"
            params.append(conversation_id)
        count = self._changed_count(sql, params)
        if count:
            log.warning("marked %d answers interrupted (their process stopped midway)", count)
        return count

    def load_window(self, conversation_id: int, token_budget: int) -> tuple[list[StoredMessage], StoredMessage | None]:
        """Reads at most MAX_WINDOW_MESSAGES + 1 rows from the (conversation_id, id) index: the cost depends on the
        window, never on the size of the table or of the conversation's whole past."""
        messages, edge, _ = self.load_window_versioned(conversation_id, token_budget)
        return messages, edge

    def load_window_versioned(
        self, conversation_id: int, token_budget: int
    ) -> tuple[list[StoredMessage], StoredMessage | None, int | None]:
        """load_window, and the window version the rows reflect (read in the same statement, so the two agree;
        None where windows carry no versions, or for an empty window)."""
        rows, version = self._window_rows(conversation_id, token_budget)
        messages = [_stored(row) for row in rows]
        edge = None
        if rows and (rows[0][8] > token_budget or len(rows) > MAX_WINDOW_MESSAGES):
            edge = messages.pop(0)
        return messages, edge, version

    def make_exact(self, conversation_id: int, token_budget: int, count: Callable[[StoredMessage], int]) -> int:
        """Replace the upper-bound sizes that decide this conversation's window with exact counts, and keep them.

        Walks back from the newest message until exact sizes fill token_budget, so the window reaches as far
        back as the model can really read. Runs once per conversation after the tokenizer is first needed;
        returns how many sizes were corrected.
        """
        corrected: list[tuple[int, int]] = []
        spent = seen = 0
        before = 2**62
        while spent <= token_budget and seen <= MAX_WINDOW_MESSAGES:
            rows = self._run(
                "SELECT id, role, text, tokens, author_id, author_name, tokens_exact, file_tokens FROM messages "
                "WHERE conversation_id = ? AND id < ? AND status != 'streaming' ORDER BY id DESC LIMIT 100",
                [conversation_id, before],
            ).rows
            for row in rows:
                message = _stored(row)
                tokens = message.tokens
                if not message.exact:
                    tokens = count(message) + message.file_tokens  # files keep the size they were stored with
                    corrected.append((tokens, message.id))
                spent += tokens
                seen += 1
                if spent > token_budget or seen > MAX_WINDOW_MESSAGES:
                    break
            if len(rows) < 100:
                break
            before = rows[-1][0]
        if corrected:
            self._write_exact(conversation_id, corrected)
        return len(corrected)

    def _write_exact(self, conversation_id: int, corrected: list[tuple[int, int]]) -> None:
        """Store exact sizes as (tokens, message id) pairs."""
        self._run_many("UPDATE messages SET tokens = ?, tokens_exact = 1 WHERE id = ?", corrected)

    def latest_thread(self, platform: str, workspace: str, channel: str) -> str | None:
        """The most recently active thread in a channel (the console resumes it)."""
        row = self._run(
            "SELECT c.thread FROM conversations c JOIN workspaces w ON w.id = c.workspace_id "
            "WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? "
            "ORDER BY (SELECT max(m.id) FROM messages m WHERE m.conversation_id = c.id) DESC, c.id DESC LIMIT 1",
            [platform, workspace, channel],
        ).one()
        return row[0] if row else None

    # -- settings --

    def settings_for(self, workspace_id: int, channel: str) -> dict[str, str]:
        """The workspace's settings with the channel's layered on; channel values come back as channel_NAME."""
        rows = self._run(
            "SELECT channel, name, value FROM settings WHERE workspace_id = ? AND channel IN ('', ?)",
            [workspace_id, channel],
        ).rows
        return {(f"channel_{name}" if row_channel else name): value for row_channel, name, value in rows}

    def set_setting(self, workspace_id: int, name: str, value: str | None, *, channel: str = "") -> str | None:
        """Set (or with None, clear) one setting; returns the old value."""
        old = self._run(
            "SELECT value FROM settings WHERE workspace_id = ? AND channel = ? AND name = ?", [workspace_id, channel, name]
        ).one()
        if value is None:
            self._run("DELETE FROM settings WHERE workspace_id = ? AND channel = ? AND name = ?", [workspace_id, channel, name])
        else:
            self._run(
                "INSERT INTO settings (workspace_id, channel, name, value, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (workspace_id, channel, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [workspace_id, channel, name, value, self._now()],
            )
        return old[0] if old else None

    def set_setting_audited(
        self, workspace_id: int, name: str, value: str | None, *, actor_id: str, channel: str = ""
    ) -> str | None:
        """Change a setting and write who changed it, from what, to what, in one transaction."""
        with self.transaction():
            old = self.set_setting(workspace_id, name, value, channel=channel)
            self._run(
                "INSERT INTO audit (workspace_id, actor_id, setting, channel, old_value, new_value, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [workspace_id, actor_id, name, channel, old, value, self._now()],
            )
        return old

    # -- usage and feedback --

    def record_usage(self, workspace_id: int, user_id: str, day: str, model: str, prompt: int, completion: int) -> None:
        self._run(*self._usage_sql(workspace_id, user_id, day, model, prompt, completion))

    @staticmethod
    def _usage_sql(workspace_id: int, user_id: str, day: str, model: str, prompt: int, completion: int) -> tuple[str, list[Any]]:
        return (
            "INSERT INTO usage_daily (workspace_id, user_id, day, model, prompt_tokens, completion_tokens, replies) "
            "VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (workspace_id, day, user_id, model) DO UPDATE SET "
            "prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens, replies = usage_daily.replies + 1",
            [workspace_id, user_id, day, model, prompt, completion],
        )

    def _settle_sql(self, counted: UsageRecord) -> list[tuple[str, list[Any]]]:
        """The statements that count an answer's usage and release its reservation."""
        statements = [self._usage_sql(counted.workspace_id, counted.user_id, counted.day, counted.model,
                                      counted.prompt_tokens, counted.completion_tokens)]
        if counted.reservation is not None:
            statements.append(("DELETE FROM reservations WHERE id = ?", [counted.reservation]))
        return statements

    def day_usage(self, workspace_id: int, day: str) -> dict[str, int]:
        """Tokens used on one day by each user of a workspace."""
        rows = self._run(
            "SELECT user_id, SUM(prompt_tokens + completion_tokens) FROM usage_daily "
            "WHERE workspace_id = ? AND day = ? GROUP BY user_id",
            [workspace_id, day],
        ).rows
        return {user: int(total) for user, total in rows}

    def month_usage(self, workspace_id: int, month_start: str) -> list[tuple[str, str, str, int, int]]:
        """Usage since the first day of a month, per person, day and model: what money budgets price."""
        rows = self._run(
            "SELECT user_id, day, model, SUM(prompt_tokens), SUM(completion_tokens) FROM usage_daily "
            "WHERE workspace_id = ? AND day >= ? GROUP BY user_id, day, model",
            [workspace_id, month_start],
        ).rows
        return [(str(user), str(day), str(model), int(p), int(c)) for user, day, model, p, c in rows]

    def _spend_rows(
        self, workspace_id: int, user_id: str, month_start: str, held_since: str
    ) -> tuple[list[tuple[str, str, str, int, int]], list[tuple[str, str, float]]]:
        """This month's usage and unexpired reservations, the person's apart and everyone else's summed under ''."""
        who = "CASE WHEN user_id = ? THEN user_id ELSE '' END AS who"
        used = self._run(
            "SELECT who, day, model, SUM(prompt_tokens), SUM(completion_tokens) FROM ("
            f"SELECT {who}, day, model, prompt_tokens, completion_tokens FROM usage_daily "
            "WHERE workspace_id = ? AND day >= ?) AS month GROUP BY who, day, model",
            [user_id, workspace_id, month_start],
        ).rows
        held = self._run(
            f"SELECT who, day, SUM(cost) FROM (SELECT {who}, day, cost FROM reservations "
            "WHERE workspace_id = ? AND day >= ? AND created_at >= ?) AS held GROUP BY who, day",
            [user_id, workspace_id, month_start, held_since],
        ).rows
        return ([(str(u), str(d), str(m), int(p), int(c)) for u, d, m, p, c in used],
                [(str(u), str(d), float(cost)) for u, d, cost in held])

    def claim_notice(self, workspace_id: int, key: str) -> bool:
        """True for the first caller with this key in a workspace, across every process sharing the database."""
        return self._run(
            "INSERT INTO notices (workspace_id, key, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [workspace_id, key, self._now()],
        ).rowcount == 1

    def usage_snapshot(
        self, workspace_id: int, user_id: str, day: str, held_since: str, minute_ago: str | None,
        month_start: str | None = None,
    ) -> UsageSnapshot:
        """Today's usage and reservations (those made since held_since: older ones belong to a process that died),
        with minute_ago the person's request times since then, and with month_start the month's spend rows."""
        row = self._run(
            "SELECT (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily "
            "WHERE workspace_id = ? AND day = ? AND user_id = ?), "
            "(SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily WHERE workspace_id = ? AND day = ?), "
            "(SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE workspace_id = ? AND day = ? AND user_id = ? "
            "AND created_at >= ?), "
            "(SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE workspace_id = ? AND day = ? AND created_at >= ?)",
            [workspace_id, day, user_id, workspace_id, day, workspace_id, day, user_id, held_since, workspace_id, day,
             held_since],
        ).one()
        assert row is not None
        recent: list[str] = []
        if minute_ago is not None:
            recent = [at for (at,) in self._run(
                "SELECT at FROM requests WHERE workspace_id = ? AND user_id = ? AND at > ? ORDER BY at",
                [workspace_id, user_id, minute_ago],
            ).rows]
        spent, held_cost = self._spend_rows(workspace_id, user_id, month_start, held_since) if month_start else ([], [])
        return UsageSnapshot(int(row[0]), int(row[1]), int(row[2]), int(row[3]), recent, spent, held_cost)

    def reserve_usage(
        self, workspace_id: int, user_id: str, day: str, held_since: str, minute_ago: str | None,
        decide: Callable[[UsageSnapshot], int | tuple[int, float]], month_start: str | None = None,
    ) -> int:
        """Admit a request in one transaction under the workspace's lock: read what every replica has used and
        reserved, let decide return the tokens to reserve, or (tokens, USD), or raise to refuse, and write the
        reservation (and, with minute_ago, the request's time). Returns the reservation's id, for settle_reservation."""
        now = self._now()
        with self.transaction():
            if self.WORKSPACE_LOCK is not None:
                self._run(self.WORKSPACE_LOCK, [workspace_id % 2**31])
            self._run("DELETE FROM reservations WHERE workspace_id = ? AND created_at < ?", [workspace_id, held_since])
            if minute_ago is not None:
                self._run(
                    # everyone's: a minute old is of no use to any rate cap, and people who stopped asking left theirs
                    "DELETE FROM requests WHERE workspace_id = ? AND at <= ?", [workspace_id, minute_ago]
                )
            decided = decide(self.usage_snapshot(workspace_id, user_id, day, held_since, minute_ago, month_start))
            tokens, cost = decided if isinstance(decided, tuple) else (decided, 0.0)
            row = self._run(
                "INSERT INTO reservations (workspace_id, day, user_id, tokens, cost, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "RETURNING id",
                [workspace_id, day, user_id, tokens, cost, now],
            ).one()
            if minute_ago is not None:
                self._run("INSERT INTO requests (workspace_id, user_id, at) VALUES (?, ?, ?)", [workspace_id, user_id, now])
        assert row is not None
        return int(row[0])

    def settle_reservation(
        self, reservation_id: int, workspace_id: int, user_id: str, day: str, model: str, usage: tuple[int, int] | None
    ) -> None:
        """Release a reservation and count what the answer really used (prompt, completion), in one transaction."""
        with self.transaction():
            self._run("DELETE FROM reservations WHERE id = ?", [reservation_id])
            if usage is not None:
                self.record_usage(workspace_id, user_id, day, model, usage[0], usage[1])

    def record_reply_parts(self, workspace_id: int, message_id: int, platform_ids: list[str]) -> None:
        """Remember every platform message a reply was posted as, so a reaction on any of them finds it."""
        statement = self._reply_parts_sql(workspace_id, message_id, platform_ids)
        if statement is not None:
            self._run(*statement)

    @staticmethod
    def _reply_parts_sql(
        workspace_id: int, message_id: int, platform_ids: list[str], when: str = "1 = 1"
    ) -> tuple[str, list[Any]] | None:
        """One INSERT of every part (one round trip, no transaction around it), of the rows for which the SQL
        condition `when` holds; None for no parts."""
        parts = list(dict.fromkeys(platform_ids))
        if not parts:
            return None
        return (
            "INSERT INTO reply_parts (workspace_id, platform_id, message_id) "
            + " UNION ALL ".join(f"SELECT ?, ?, ? WHERE {when}" for _ in parts) + " ON CONFLICT DO NOTHING",
            [value for platform_id in parts for value in (workspace_id, platform_id, message_id)],
        )

    def record_feedback(self, workspace_id: int, platform_id: str, user_id: str, value: int | None) -> bool:
        """A thumbs up (1) or down (-1) on a reply, or None to withdraw it; False when it is not a bot reply."""
        row = self._run(
            "SELECT message_id FROM reply_parts WHERE workspace_id = ? AND platform_id = ?", [workspace_id, platform_id]
        ).one()
        if row is None:
            return False
        if value is None:
            self._run("DELETE FROM feedback WHERE message_id = ? AND user_id = ?", [row[0], user_id])
        else:
            self._run(
                "INSERT INTO feedback (message_id, user_id, value, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (message_id, user_id) DO UPDATE SET value = excluded.value, at = excluded.at",
                [row[0], user_id, int(value), self._now()],
            )
        return True

    def record_moderation(
        self, workspace_id: int, conversation_id: int, direction: str, decision: str, categories: list[str], text: str | None
    ) -> None:
        self._run(
            "INSERT INTO moderation_log (workspace_id, conversation_id, direction, decision, categories, text, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [workspace_id, conversation_id, direction, str(decision), ",".join(categories), text, self._now()],
        )

    # -- who may forget what, and erasing --

    def is_participant(self, key: ConversationKey, user_id: str) -> bool:
        return self._run(
            "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "JOIN workspaces w ON w.id = c.workspace_id WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? "
            "AND c.thread = ? AND m.author_id = ? LIMIT 1",
            [key.platform, key.workspace, key.channel, key.thread, user_id],
        ).one() is not None

    def forget_channel(self, platform: str, workspace: str, channel: str) -> tuple[int, list[int]]:
        """Erase the stored messages of every conversation in a channel: (messages removed, conversation ids)."""
        workspace_id = self.workspace_id(platform, workspace)
        ids = [int(row[0]) for row in self._run(
            "SELECT id FROM conversations WHERE workspace_id = ? AND channel = ?", [workspace_id, channel]
        ).rows]
        removed = 0
        for conversation in ids:
            removed += self._changed_count("DELETE FROM messages WHERE conversation_id = ?", [conversation])
        return removed, ids

    def forget_conversation(self, key: ConversationKey) -> tuple[int, int | None]:
        """Erase a conversation's stored messages: (how many were removed, its conversation id if it exists)."""
        if not self.has_conversation(key):
            return 0, None
        conversation = self.conversation_id(key)
        return self._changed_count("DELETE FROM messages WHERE conversation_id = ?", [conversation]), conversation

    def delete_workspace(self, platform: str, external_id: str) -> bool:
        """Erase everything stored for a workspace (the app was uninstalled or the bot left the server)."""
        return self._run("DELETE FROM workspaces WHERE platform = ? AND external_id = ?", [platform, external_id]).rowcount > 0

    # -- de-duplication and retention --

    def first_delivery(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False when it was seen before (a retry or a redelivery), by any process."""
        return self._run(
            "INSERT INTO events (platform, event_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [platform, event_id, self._now()],
        ).rowcount == 1

    def purge_events(self, older_than: str, batch: int = PURGE_BATCH) -> int:
        """Drop de-duplication records older than any redelivery could be (up to batch of them)."""
        return self._run(
            "DELETE FROM events WHERE (platform, event_id) IN "
            "(SELECT platform, event_id FROM events WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            [older_than, batch],
        ).rowcount

    def purge_notices(self, older_than: str, batch: int = PURGE_BATCH) -> int:
        """Drop the marks of notices sent before any period they belong to (a month at most), up to batch of them."""
        return self._run(
            "DELETE FROM notices WHERE (workspace_id, key) IN "
            "(SELECT workspace_id, key FROM notices WHERE at < ? ORDER BY at LIMIT ?)",
            [older_than, batch],
        ).rowcount

    def purge_batch(self, older_than: str, batch: int = PURGE_BATCH) -> int:
        """Delete up to batch messages older than the retention cutoff (oldest first); returns how many went.

        Small batches keep each write transaction short, so the bot's own writes never wait long behind it."""
        removed = self._changed_count(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            [older_than, batch],
        )
        if removed < batch:
            self._run(
                "UPDATE moderation_log SET text = NULL WHERE id IN "
                "(SELECT id FROM moderation_log WHERE at < ? AND text IS NOT NULL LIMIT ?)",
                [older_than, batch],
            )
        return removed

    def purge(self, older_than: str) -> int:
        """Delete all stored message text older than the cutoff, batch by batch; daily usage totals are kept."""
        removed = 0
        while True:
            batch = self.purge_batch(older_than)
            removed += batch
            if batch < PURGE_BATCH:
                return removed

    def claim_job(self, name: str, every_seconds: float) -> bool:
        """Whether this process should run a periodic job now: true for one caller per period, across processes."""
        now = self.clock()
        return self._run(
            "INSERT INTO jobs (name, last_run) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run "
            "WHERE jobs.last_run <= ? RETURNING name",
            [name, iso(now), iso(now - timedelta(seconds=every_seconds))],
        ).one() is not None
