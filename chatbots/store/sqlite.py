"""Every SQL statement, for SQLite through sqlite-utils: plain blocking calls, no caches.

The bot reaches it only through chatbots.store.Store, which runs these calls on one worker thread so a
locked database never stalls the event loop. Operator commands (reports, purge, export) call it directly.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ..clock import Clock, iso, system_clock
from ..migrations import migrations
from ..tokens import MESSAGE_OVERHEAD
from ..types import ConversationKey
from ..window import MAX_WINDOW_MESSAGES, StoredMessage

log = logging.getLogger(__name__)


WINDOW_SQL = """SELECT id, role, text, tokens, author_id, author_name, tokens_exact, running FROM (
    SELECT *, SUM(tokens) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running
    FROM (SELECT id, role, text, tokens, author_id, author_name, tokens_exact FROM messages
          WHERE conversation_id = ? AND status != 'streaming' ORDER BY id DESC LIMIT ?)
) WHERE running - tokens <= ? ORDER BY id"""
"""Newest rows first through the (conversation_id, id) index, summing tokens until the budget is spent; the
first row past the budget comes too (it tells whether the budget cut the history)."""


def _stored(row: tuple[Any, ...]) -> StoredMessage:
    """A StoredMessage from (id, role, text, tokens, author_id, author_name, tokens_exact, ...)."""
    return StoredMessage(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))


INTERRUPTED_MARK = "\n\n[This answer was interrupted.]"


class StoreError(Exception):
    """The database cannot be used; the message says what to fix."""

    @classmethod
    def about(cls, path: str | Path, error: sqlite3.Error) -> StoreError:
        """One line for the operator: the file, what SQLite said, and what to do, by the kind of failure."""
        return cls(f"cannot use the database at {path}: {error} (check CHATBOTS_DB: {cls._fix(Path(path), error)})")

    @staticmethod
    def _fix(path: Path, error: sqlite3.Error) -> str:
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return "another process holds a write lock on it; run one bot per file, and stop the other writer or retry"
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            return "this user cannot write it; make the file and its folder writable, or point CHATBOTS_DB elsewhere"
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return "it is damaged or not a SQLite database; restore it from a backup, or point CHATBOTS_DB at a new file"
        if code == sqlite3.SQLITE_FULL:
            return "the disk is full; free some space"
        folder = path.absolute().parent
        if code == sqlite3.SQLITE_CANTOPEN and not folder.is_dir():
            return f"the folder {folder} does not exist; create it, or point CHATBOTS_DB elsewhere"
        if code == sqlite3.SQLITE_CANTOPEN and path.is_dir():
            return f"it is a folder; set CHATBOTS_DB to a file path such as {path / 'chatbots.db'}"
        return "the file, its folder and their permissions for this user"


PURGE_BATCH = 2000
"""Rows deleted per statement by the retention purge: each batch holds the write lock for milliseconds."""


class SQLiteDatabase:
    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    @classmethod
    def open(cls, path: str | Path, clock: Clock = system_clock, busy_timeout: float = 5.0) -> SQLiteDatabase:
        """Open (creating and migrating as needed) the database at path; ':memory:' works for tests."""
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout)
            db = Database(conn, execute_plugins=False)
            if str(path) != ":memory:":
                db.enable_wal()
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, which is what WAL needs
            db.execute("PRAGMA foreign_keys=ON")
            migrations.apply(db)
        except sqlite3.Error as error:
            raise StoreError.about(path, error) from None
        return cls(db, clock)

    def close(self) -> None:
        self.db.close()

    def _now(self) -> str:
        return iso(self.clock())

    def workspace_id(self, platform: str, external_id: str) -> int:
        """The workspace's row id, created on first sight."""
        self.db.execute(
            "INSERT OR IGNORE INTO workspaces (platform, external_id, created_at) VALUES (?, ?, ?)",
            [platform, external_id, self._now()],
        )
        return self.db.execute(
            "SELECT id FROM workspaces WHERE platform = ? AND external_id = ?", [platform, external_id]
        ).fetchone()[0]

    def conversation_id(self, key: ConversationKey) -> int:
        """The conversation's row id, created (with its workspace) on first sight."""
        workspace = self.workspace_id(key.platform, key.workspace)
        self.db.execute(
            "INSERT OR IGNORE INTO conversations (workspace_id, channel, thread, created_at) VALUES (?, ?, ?, ?)",
            [workspace, key.channel, key.thread, self._now()],
        )
        return self.db.execute(
            "SELECT id FROM conversations WHERE workspace_id = ? AND channel = ? AND thread = ?",
            [workspace, key.channel, key.thread],
        ).fetchone()[0]

    def has_conversation(self, key: ConversationKey) -> bool:
        """Whether the bot has stored anything for this thread (without creating it)."""
        row = self.db.execute(
            "SELECT 1 FROM conversations c JOIN workspaces w ON w.id = c.workspace_id "
            "WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? AND c.thread = ?",
            [key.platform, key.workspace, key.channel, key.thread],
        ).fetchone()
        return row is not None

    def add_message(
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
    ) -> int | None:
        """Store one turn; None when this platform message was stored before (a redelivery).

        exact=False marks tokens as an upper bound (counted before the tokenizer was needed)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO messages (conversation_id, role, text, tokens, tokens_exact, author_id, author_name, "
            "platform_id, model, prompt_tokens, completion_tokens, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [conversation_id, role, text, tokens, exact, author_id, author_name, platform_id, model,
             prompt_tokens, completion_tokens, status, self._now()],
        )
        if cursor.rowcount == 0:
            return None
        return cursor.lastrowid

    def begin_answer(self, conversation_id: int, model: str) -> int:
        """A row for an answer about to stream; kept out of history until complete_answer."""
        cursor = self.db.execute(
            "INSERT INTO messages (conversation_id, role, text, tokens, model, status, created_at) "
            "VALUES (?, 'assistant', '', 0, ?, 'streaming', ?)",
            [conversation_id, model, self._now()],
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def save_partial(self, message_id: int, text: str) -> None:
        self.db.execute("UPDATE messages SET text = ? WHERE id = ?", [text, message_id])

    def complete_answer(
        self, message_id: int, text: str, tokens: int, *, status: str, exact: bool = True,
        platform_id: str | None = None, usage: tuple[int, int] | None = None,
    ) -> int | None:
        """Finish an answer row: its text becomes history; an answer with nothing shown leaves no row.

        Returns the conversation id when the answer was kept."""
        if not text.strip():
            self.db.execute("DELETE FROM messages WHERE id = ?", [message_id])
            return None
        prompt_tokens, completion_tokens = usage or (None, None)
        row = self.db.execute(
            "UPDATE messages SET text = ?, tokens = ?, tokens_exact = ?, status = ?, platform_id = ?, prompt_tokens = ?, "
            "completion_tokens = ? WHERE id = ? RETURNING conversation_id",
            [text, tokens, exact, status, platform_id, prompt_tokens, completion_tokens, message_id],
        ).fetchone()
        self.db.conn.commit()
        return None if row is None else int(row[0])

    def recover_interrupted(self) -> int:
        """After a crash: answers left 'streaming' become 'interrupted', marked so in the text the model reads.

        Called by the answering process at start-up only: operator commands open the same file while it runs.
        """
        # The partial text was saved without a size: give it an upper bound (its bytes), counted for real if it matters.
        marked = "CASE WHEN text = '' THEN ? ELSE text || ? END"
        cursor = self.db.execute(
            f"UPDATE messages SET status = 'interrupted', text = {marked}, "
            f"tokens = length(CAST({marked} AS BLOB)) + ?, tokens_exact = 0 WHERE status = 'streaming'",
            [INTERRUPTED_MARK.strip(), INTERRUPTED_MARK, INTERRUPTED_MARK.strip(), INTERRUPTED_MARK, MESSAGE_OVERHEAD],
        )
        if cursor.rowcount:
            log.warning("marked %d answers interrupted by the last shutdown", cursor.rowcount)
        return cursor.rowcount

    def load_window(self, conversation_id: int, token_budget: int) -> tuple[list[StoredMessage], StoredMessage | None]:
        """Reads at most MAX_WINDOW_MESSAGES + 1 rows from the (conversation_id, id) index: the cost depends on the
        window, never on the size of the table or of the conversation's whole past."""
        rows = self.db.execute(WINDOW_SQL, [conversation_id, MAX_WINDOW_MESSAGES + 1, token_budget]).fetchall()
        messages = [_stored(row) for row in rows]
        edge = None
        if rows and (rows[0][7] > token_budget or len(rows) > MAX_WINDOW_MESSAGES):
            edge = messages.pop(0)
        return messages, edge

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
            rows = self.db.execute(
                "SELECT id, role, text, tokens, author_id, author_name, tokens_exact FROM messages "
                "WHERE conversation_id = ? AND id < ? AND status != 'streaming' ORDER BY id DESC LIMIT 100",
                [conversation_id, before],
            ).fetchall()
            for row in rows:
                message = _stored(row)
                tokens = message.tokens
                if not message.exact:
                    tokens = count(message)
                    corrected.append((tokens, message.id))
                spent += tokens
                seen += 1
                if spent > token_budget or seen > MAX_WINDOW_MESSAGES:
                    break
            if len(rows) < 100:
                break
            before = rows[-1][0]
        if corrected:
            self.db.conn.executemany("UPDATE messages SET tokens = ?, tokens_exact = 1 WHERE id = ?", corrected)
            self.db.conn.commit()
        return len(corrected)

    def settings_for(self, workspace_id: int, channel: str) -> dict[str, str]:
        """The workspace's settings with the channel's layered on; channel values come back as channel_NAME."""
        rows = self.db.execute(
            "SELECT channel, name, value FROM settings WHERE workspace_id = ? AND channel IN ('', ?)",
            [workspace_id, channel],
        ).fetchall()
        return {(f"channel_{name}" if channel else name): value for channel, name, value in rows}

    def set_setting(self, workspace_id: int, name: str, value: str | None, *, channel: str = "") -> str | None:
        """Set (or with None, clear) one setting; returns the old value."""
        old = self.db.execute(
            "SELECT value FROM settings WHERE workspace_id = ? AND channel = ? AND name = ?", [workspace_id, channel, name]
        ).fetchone()
        if value is None:
            self.db.execute(
                "DELETE FROM settings WHERE workspace_id = ? AND channel = ? AND name = ?", [workspace_id, channel, name]
            )
        else:
            self.db.execute(
                "INSERT INTO settings (workspace_id, channel, name, value, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (workspace_id, channel, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [workspace_id, channel, name, value, self._now()],
            )
        return old[0] if old else None

    def latest_thread(self, platform: str, workspace: str, channel: str) -> str | None:
        """The most recently active thread in a channel (the console resumes it)."""
        row = self.db.execute(
            "SELECT c.thread FROM conversations c JOIN workspaces w ON w.id = c.workspace_id "
            "WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? "
            "ORDER BY (SELECT max(m.id) FROM messages m WHERE m.conversation_id = c.id) DESC, c.id DESC LIMIT 1",
            [platform, workspace, channel],
        ).fetchone()
        return row[0] if row else None

    def set_setting_audited(
        self, workspace_id: int, name: str, value: str | None, *, actor_id: str, channel: str = ""
    ) -> str | None:
        """Change a setting and write who changed it, from what, to what, in one transaction."""
        with self.db.atomic():
            old = self.set_setting(workspace_id, name, value, channel=channel)
            self.db.execute(
                "INSERT INTO audit (workspace_id, actor_id, setting, channel, old_value, new_value, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [workspace_id, actor_id, name, channel, old, value, self._now()],
            )
        return old

    def record_usage(self, workspace_id: int, user_id: str, day: str, model: str, prompt: int, completion: int) -> None:
        self.db.execute(
            "INSERT INTO usage_daily (workspace_id, user_id, day, model, prompt_tokens, completion_tokens, replies) "
            "VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (workspace_id, day, user_id, model) DO UPDATE SET "
            "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, replies = replies + 1",
            [workspace_id, user_id, day, model, prompt, completion],
        )

    def day_usage(self, workspace_id: int, day: str) -> dict[str, int]:
        """Tokens used on one day by each user of a workspace."""
        rows = self.db.execute(
            "SELECT user_id, SUM(prompt_tokens + completion_tokens) FROM usage_daily "
            "WHERE workspace_id = ? AND day = ? GROUP BY user_id",
            [workspace_id, day],
        ).fetchall()
        return {user: total for user, total in rows}

    def record_reply_parts(self, workspace_id: int, message_id: int, platform_ids: list[str]) -> None:
        """Remember every platform message a reply was posted as, so a reaction on any of them finds it."""
        self.db.conn.executemany(
            "INSERT OR IGNORE INTO reply_parts (workspace_id, platform_id, message_id) VALUES (?, ?, ?)",
            [(workspace_id, platform_id, message_id) for platform_id in platform_ids],
        )
        self.db.conn.commit()

    def record_feedback(self, workspace_id: int, platform_id: str, user_id: str, value: int | None) -> bool:
        """A thumbs up (1) or down (-1) on a reply, or None to withdraw it; False when it is not a bot reply."""
        row = self.db.execute(
            "SELECT message_id FROM reply_parts WHERE workspace_id = ? AND platform_id = ?", [workspace_id, platform_id]
        ).fetchone()
        if row is None:
            return False
        if value is None:
            self.db.execute("DELETE FROM feedback WHERE message_id = ? AND user_id = ?", [row[0], user_id])
        else:
            self.db.execute(
                "INSERT INTO feedback (message_id, user_id, value, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (message_id, user_id) DO UPDATE SET value = excluded.value, at = excluded.at",
                [row[0], user_id, value, self._now()],
            )
        return True

    def is_participant(self, key: ConversationKey, user_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "JOIN workspaces w ON w.id = c.workspace_id WHERE w.platform = ? AND w.external_id = ? AND c.channel = ? "
            "AND c.thread = ? AND m.author_id = ? LIMIT 1",
            [key.platform, key.workspace, key.channel, key.thread, user_id],
        ).fetchone()
        return row is not None

    def forget_channel(self, platform: str, workspace: str, channel: str) -> tuple[int, list[int]]:
        """Erase the stored messages of every conversation in a channel: (messages removed, conversation ids)."""
        workspace_id = self.workspace_id(platform, workspace)
        ids = [row[0] for row in self.db.execute(
            "SELECT id FROM conversations WHERE workspace_id = ? AND channel = ?", [workspace_id, channel]
        )]
        removed = 0
        for conversation in ids:
            removed += self.db.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation]).rowcount
        return removed, ids

    def record_moderation(
        self, workspace_id: int, conversation_id: int, direction: str, decision: str, categories: list[str], text: str | None
    ) -> None:
        self.db.execute(
            "INSERT INTO moderation_log (workspace_id, conversation_id, direction, decision, categories, text, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [workspace_id, conversation_id, direction, decision, ",".join(categories), text, self._now()],
        )

    def purge_batch(self, older_than: str, batch: int = PURGE_BATCH) -> int:
        """Delete up to batch messages older than the retention cutoff (oldest first); returns how many went.

        Small batches keep each write transaction short, so the bot's own writes never wait long behind it."""
        removed = self.db.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            [older_than, batch],
        ).rowcount
        if removed < batch:
            self.db.execute(
                "UPDATE moderation_log SET text = NULL WHERE id IN "
                "(SELECT id FROM moderation_log WHERE at < ? AND text IS NOT NULL LIMIT ?)",
                [older_than, batch],
            )
        self.db.conn.commit()
        return removed

    def purge(self, older_than: str) -> int:
        """Delete all stored message text older than the cutoff, batch by batch; daily usage totals are kept."""
        removed = 0
        while True:
            batch = self.purge_batch(older_than)
            removed += batch
            if batch < PURGE_BATCH:
                return removed

    def delete_workspace(self, platform: str, external_id: str) -> bool:
        """Erase everything stored for a workspace (the app was uninstalled or the bot left the server)."""
        deleted = self.db.execute(
            "DELETE FROM workspaces WHERE platform = ? AND external_id = ?", [platform, external_id]
        ).rowcount
        return deleted > 0

    def forget_conversation(self, key: ConversationKey) -> tuple[int, int | None]:
        """Erase a conversation's stored messages: (how many were removed, its conversation id if it exists)."""
        if not self.has_conversation(key):
            return 0, None
        conversation = self.conversation_id(key)
        return self.db.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation]).rowcount, conversation

    def first_delivery(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False when it was seen before (a retry or a redelivery)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (platform, event_id, received_at) VALUES (?, ?, ?)",
            [platform, event_id, self._now()],
        )
        return cursor.rowcount == 1

    def purge_events(self, older_than: str, batch: int = PURGE_BATCH) -> int:
        """Drop de-duplication records older than any redelivery could be (up to batch of them)."""
        removed = self.db.execute(
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            [older_than, batch],
        ).rowcount
        self.db.conn.commit()
        return removed
