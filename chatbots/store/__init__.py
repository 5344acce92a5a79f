"""The store the bot talks to: every method is awaited, SQL runs on worker threads, hot reads come from memory.

A locked or slow database then delays only the turns that need it; the event loop keeps serving heartbeats,
health checks and everything else. With SQLite one process owns the file, so the caches of settings and recent
windows are kept current by the writes made here. With PostgreSQL replicas share the database: ids, which never
change, are cached; settings are read for every turn (with its lock); a window is kept with the version of its conversation it
reflects (conversations.version, bumped by every statement that changes what the window shows) and served from
memory only when the version this turn's own write returned says nobody else changed it since.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..clock import Clock, system_clock
from ..installations import InstallationSummary, InstalledApp
from ..lru import LRU
from ..types import ConversationKey
from ..window import StoredFile, StoredMessage, Window, WindowCache
from . import installations, reports
from .base import INTERRUPTED_MARK, PURGE_BATCH, WINDOW_SQL, SQLDatabase, StoreError, UsageRecord, UsageSnapshot
from .sqlite import SQLiteDatabase

__all__ = [
    "INTERRUPTED_MARK", "WINDOW_SQL", "SQLDatabase", "SQLiteDatabase", "Store", "StoreError", "UsageRecord", "UsageSnapshot",
    "open_database",
]


def open_database(database_url: str | None, db_path: str, clock: Clock = system_clock) -> SQLDatabase:
    """PostgreSQL when DATABASE_URL names one, else the SQLite file CHATBOTS_DB: created and migrated as needed."""
    if database_url:
        from .postgres import PostgresDatabase  # psycopg loads only for PostgreSQL

        return PostgresDatabase.open(database_url, clock)
    return SQLiteDatabase.open(db_path, clock)

T = TypeVar("T")


def turn_key(key: ConversationKey) -> int:
    """A conversation's lock key: a signed 64-bit hash of its key (a collision only makes two turns take turns)."""
    text = "\x1f".join((key.platform, key.workspace, key.channel, key.thread))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)

SETTINGS_BY_KEY = (
    "SELECT json_build_array((SELECT COALESCE(json_agg(json_build_array(s.channel, s.name, s.value)), '[]') "
    "FROM settings s JOIN workspaces w ON w.id = s.workspace_id "
    "WHERE w.platform = ? AND w.external_id = ? AND s.channel IN ('', ?)), "
    "EXISTS (SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id "
    "JOIN workspaces w ON w.id = c.workspace_id WHERE m.status = 'streaming' "
    "AND w.platform = ? AND w.external_id = ? AND c.channel = ? AND c.thread = ?))"
)
"""A conversation's settings, and whether an answer in it is still marked streaming, as one JSON value (PostgreSQL),
read in the statement that takes its turn's lock. Holding that lock, no live turn streams into the conversation,
so such an answer's replica died: the next message claims it at once instead of waiting out the lease."""


def _settings(rows: list[list[str]]) -> dict[str, str]:
    """SETTINGS_BY_KEY's value as settings_for returns them."""
    return {(f"channel_{name}" if channel else name): value for channel, name, value in rows}


ID_CACHE_ENTRIES = 10_000
SETTINGS_CACHE_ENTRIES = 10_000


class Store:
    def __init__(self, sql: SQLDatabase) -> None:
        self.sql = sql
        self.clock: Clock = sql.clock
        self.shared = sql.shared
        self.errors: tuple[type[Exception], ...] = sql.errors
        """What the database driver raises when the database cannot be used (locked, gone, full)."""
        self._worker = ThreadPoolExecutor(max_workers=sql.workers, thread_name_prefix="chatbots-db")
        self._workspaces: LRU[tuple[str, str], int] = LRU(ID_CACHE_ENTRIES)
        self._conversations: LRU[ConversationKey, int] = LRU(ID_CACHE_ENTRIES)
        self._settings: LRU[tuple[int, str], dict[str, str]] = LRU(SETTINGS_CACHE_ENTRIES)
        self.windows = WindowCache()
        self._versions: LRU[int, int] = LRU(ID_CACHE_ENTRIES)
        """Shared databases: the version of its conversation each cached window reflects."""
        self._turn_settings: LRU[ConversationKey, dict[str, str]] = LRU(ID_CACHE_ENTRIES)
        """Shared databases: settings read with a turn's lock, until the turn asks for them."""
        self._written: LRU[int, int] = LRU(ID_CACHE_ENTRIES)
        """Shared databases: the version this Store's last write of a message returned, until the next window read;
        kept only for a conversation whose turn this Store holds (nobody else can write it meanwhile)."""
        self._holding: set[ConversationKey] = set()
        self._turn_ids: set[int] = set()
        """Shared databases: the conversations whose turns this Store holds, by key and (once looked up) by id."""

    @classmethod
    def open(cls, path: str | Path, clock: Clock = system_clock, busy_timeout: float = 5.0) -> Store:
        """Open (creating and migrating as needed) the database at path; ':memory:' works for tests."""
        return cls(SQLiteDatabase.open(path, clock, busy_timeout))

    @property
    def db(self) -> Any:
        """The sqlite-utils Database, for checks and tests that read the file directly (SQLite only)."""
        return self.sql.db  # type: ignore[attr-defined]

    async def close_turns(self) -> None:
        """Release the connections that hold conversation turns (PostgreSQL); call before close."""
        if self.sql.turn_locks is not None:
            await self.sql.turn_locks.close()

    def close(self) -> None:
        """Wait for statements in flight, then close the database."""
        self._worker.shutdown(wait=True)
        self.sql.close()

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking SQLDatabase call on one of the store's database threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(call, *args, **kwargs))

    # -- ids, settings and windows: from memory once seen --

    async def workspace_id(self, platform: str, external_id: str) -> int:
        found = self._workspaces.get((platform, external_id))
        if found is None:
            found = await self.run(self.sql.workspace_id, platform, external_id)
            self._workspaces.put((platform, external_id), found)
        return found

    async def conversation_id(self, key: ConversationKey) -> int:
        cached = self._conversations.get(key)
        if cached is None:
            workspace = await self.workspace_id(key.platform, key.workspace)  # from memory once seen
            found, created = await self.run(self.sql.find_conversation, key, workspace)
            if created:  # empty, and its version is 0: its window needs no read
                self.windows.start(found)
                if self.shared:
                    self._versions.put(found, 0)
            self._conversations.put(key, found)
        else:
            found = cached
        if key in self._holding:
            self._turn_ids.add(found)
        return found

    async def has_message(self, conversation_id: int, platform_id: str) -> bool:
        return await self.run(self.sql.has_message, conversation_id, platform_id)

    async def has_conversation(self, key: ConversationKey) -> bool:
        """Whether the bot has stored anything for this thread (without creating it)."""
        return key in self._conversations or await self.run(self.sql.has_conversation, key)

    async def settings_for(self, key: ConversationKey) -> dict[str, str]:
        """The workspace's settings with the channel's layered on; channel values come back as channel_NAME.

        Shared databases: read for every turn (with the turn's lock when that was free, see turn())."""
        read_with_lock = self._turn_settings.pop(key)
        if read_with_lock is not None:
            return read_with_lock
        workspace = await self.workspace_id(key.platform, key.workspace)
        found = None if self.shared else self._settings.get((workspace, key.channel))
        if found is None:
            found = await self.run(self.sql.settings_for, workspace, key.channel)
            self._settings.put((workspace, key.channel), found)
        return found

    async def window(self, conversation_id: int, token_budget: int) -> Window:
        """The newest messages that fit token_budget, oldest first, and whether upper-bound sizes cut it.

        Shared databases: from memory only right after this Store stored a message in the conversation (the turn
        holds the conversation, see turn()) and the version that write returned is the held window's; otherwise
        the window is read with its version."""
        if not self.shared:
            if not self.windows.covers(conversation_id, token_budget):
                rows, edge = await self.run(self.sql.load_window, conversation_id, token_budget)
                self.windows.put(conversation_id, token_budget, rows, edge)
            return self.windows.get(conversation_id, token_budget)
        written = self._written.pop(conversation_id)
        if written is None or written != self._versions.get(conversation_id) or not self.windows.covers(conversation_id, token_budget):
            rows, edge, version = await self.run(self.sql.load_window_versioned, conversation_id, token_budget)
            self.windows.put(conversation_id, token_budget, rows, edge)
            self._held(conversation_id, version)
        return self.windows.get(conversation_id, token_budget)

    def _held(self, conversation_id: int, version: int | None) -> None:
        """Record the version the cached window reflects (None: unknown, so it is read again when next needed)."""
        if version is None:
            self._versions.pop(conversation_id)
        else:
            self._versions.put(conversation_id, version)

    def _extend(self, conversation_id: int, version: int | None, message: StoredMessage) -> None:
        """After this Store's own write: extend the cached window when it reflected the version just before the
        write (nobody else changed it in between), else drop it."""
        if not self.shared:
            self.windows.append(conversation_id, message)
            return
        if version is not None and version - 1 == self._versions.get(conversation_id):
            self.windows.append(conversation_id, message)
            self._versions.put(conversation_id, version)
        else:
            self.windows.drop(conversation_id)
            self._versions.pop(conversation_id)

    async def recent_messages(self, conversation_id: int, token_budget: int) -> list[StoredMessage]:
        return (await self.window(conversation_id, token_budget)).messages

    async def make_exact(self, conversation_id: int, token_budget: int, count: Callable[[StoredMessage], int]) -> int:
        """Replace the upper-bound sizes deciding this window with exact counts (counted on the worker thread)."""
        corrected = await self.run(self.sql.make_exact, conversation_id, token_budget, count)
        if corrected:
            self._forget_window(conversation_id)
        return corrected

    def _forget_window(self, conversation_id: int) -> None:
        self.windows.drop(conversation_id)
        self._versions.pop(conversation_id)
        self._written.pop(conversation_id)

    # -- the turn's writes --

    async def add_message(self, conversation_id: int, role: str, text: str, tokens: int, **fields: Any) -> int | None:
        """Store one turn; None when this platform message was stored before (a redelivery)."""
        message_id, version = await self.run(self.sql.add_message_versioned, conversation_id, role, text, tokens, **fields)
        self._stored(conversation_id, message_id, version, role, text, tokens, fields)
        return message_id

    async def add_question(
        self, conversation_id: int, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int | None, int | None]:
        """Store a person's message and, with answer_model, begin the answer's row with it (one round trip on
        PostgreSQL): (message id, or None for a redelivery; the answer's row, or None)."""
        message_id, version, answer = await self.run(
            self.sql.add_question_versioned, conversation_id, text, tokens, answer_model, **fields
        )
        self._stored(conversation_id, message_id, version, "user", text, tokens, fields)
        return message_id, answer

    def _stored(
        self, conversation_id: int, message_id: int | None, version: int | None, role: str, text: str, tokens: int,
        fields: dict[str, Any],
    ) -> None:
        """After this Store added a message: the cached window grows, and the write's version vouches for it."""
        if message_id is None:
            return
        self._extend(conversation_id, version, StoredMessage(
            message_id, role, text, tokens, fields.get("author_id"), fields.get("author_name"), fields.get("exact", True),
            sum(file.tokens for file in fields.get("files", ())),
        ))
        if version is not None and conversation_id in self._turn_ids:
            self._written.put(conversation_id, version)

    async def message_files(self, message_ids: list[int]) -> dict[int, list[StoredFile]]:
        """Files shared with these messages (asked only for messages with file_tokens, so text-only windows never do)."""
        return await self.run(self.sql.message_files, message_ids)

    async def ask(
        self, key: ConversationKey, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int, int | None, int | None]:
        """add_question in the conversation of key: (conversation id, message id or None, answer row or None).

        A conversation this process holds no id for (most first messages of a thread) is found or created in the same
        call, on PostgreSQL in the question's own statement: one statement fewer before the model is asked."""
        if key in self._conversations:
            conversation = await self.conversation_id(key)
            message_id, answer = await self.add_question(conversation, text, tokens, answer_model, **fields)
            return conversation, message_id, answer
        workspace = await self.workspace_id(key.platform, key.workspace)
        conversation, created, message_id, version, answer = await self.run(
            self.sql.add_first_question, key, workspace, text, tokens, answer_model, **fields
        )
        self._conversations.put(key, conversation)
        if key in self._holding:
            self._turn_ids.add(conversation)
        if created:  # its window starts empty (version 0); the question's write extends it
            self.windows.start(conversation)
            if self.shared:
                self._versions.put(conversation, 0)
        self._stored(conversation, message_id, version, "user", text, tokens, fields)
        return conversation, message_id, answer

    async def begin_answer(self, conversation_id: int, model: str) -> int:
        return await self.run(self.sql.begin_answer, conversation_id, model)

    async def save_partial(self, message_id: int, text: str) -> None:
        await self.run(self.sql.save_partial, message_id, text)

    async def complete_answer(self, message_id: int, text: str, tokens: int, **fields: Any) -> None:
        """Finish an answer row; reply_parts=(workspace id, platform ids) also records its parts, counted=UsageRecord
        counts its usage and releases its reservation (all one statement on PostgreSQL)."""
        conversation, version = await self.run(self.sql.complete_answer_versioned, message_id, text, tokens, **fields)
        if conversation is not None:
            exact = fields.get("exact", True)
            self._extend(conversation, version, StoredMessage(message_id, "assistant", text, tokens, None, None, exact))

    async def recover_interrupted(self, idle_since: str | None = None) -> int:
        recovered = await self.run(self.sql.recover_interrupted, idle_since)
        if recovered:
            self._forget_windows()  # the marked answers join their windows
        return recovered

    async def claim_job(self, name: str, every_seconds: float) -> bool:
        return await self.run(self.sql.claim_job, name, every_seconds)

    async def ping(self) -> None:
        await self.run(self.sql.ping)

    async def record_reply_parts(self, workspace_id: int, message_id: int, platform_ids: list[str]) -> None:
        await self.run(self.sql.record_reply_parts, workspace_id, message_id, platform_ids)

    async def record_moderation(
        self, key: ConversationKey, direction: str, decision: str, categories: list[str], text: str | None
    ) -> None:
        workspace = await self.workspace_id(key.platform, key.workspace)
        conversation = await self.conversation_id(key)
        await self.run(self.sql.record_moderation, workspace, conversation, direction, decision, categories, text)

    async def record_usage(self, workspace_id: int, user_id: str, day: str, model: str, prompt: int, completion: int) -> None:
        await self.run(self.sql.record_usage, workspace_id, user_id, day, model, prompt, completion)

    async def day_usage(self, workspace_id: int, day: str) -> dict[str, int]:
        return await self.run(self.sql.day_usage, workspace_id, day)

    # -- what replicas share: caps' reservations and request times, and whose turn it is --

    async def usage_snapshot(
        self, workspace_id: int, user_id: str, day: str, held_since: str, minute_ago: str | None,
        month_start: str | None = None,
    ) -> UsageSnapshot:
        return await self.run(self.sql.usage_snapshot, workspace_id, user_id, day, held_since, minute_ago, month_start)

    async def reserve_usage(
        self, workspace_id: int, user_id: str, day: str, held_since: str, minute_ago: str | None,
        decide: Callable[[UsageSnapshot], int | tuple[int, float]], month_start: str | None = None,
    ) -> int:
        """Admit under the workspace's lock, across replicas; decide runs on the database thread and may raise."""
        return await self.run(self.sql.reserve_usage, workspace_id, user_id, day, held_since, minute_ago, decide, month_start)

    async def month_usage(self, workspace_id: int, month_start: str) -> list[tuple[str, str, str, int, int]]:
        return await self.run(self.sql.month_usage, workspace_id, month_start)

    async def claim_notice(self, workspace_id: int, key: str) -> bool:
        """Whether this caller is the first to send the notice named key (once across replicas)."""
        return await self.run(self.sql.claim_notice, workspace_id, key)

    async def settle_reservation(
        self, reservation_id: int, workspace_id: int, user_id: str, day: str, model: str, usage: tuple[int, int] | None
    ) -> None:
        await self.run(self.sql.settle_reservation, reservation_id, workspace_id, user_id, day, model, usage)

    @contextlib.asynccontextmanager
    async def turn(self, key: ConversationKey) -> AsyncIterator[None]:
        """Hold the conversation's turn across every process sharing the database (nothing to do when one process
        owns it: the engine orders turns in memory). Keyed by the conversation key, so no row is created."""
        locks = self.sql.turn_locks
        if locks is None:
            yield
            return
        where = [key.platform, key.workspace, key.channel]
        async with locks.held(turn_key(key), (SETTINGS_BY_KEY, [*where, *where, key.thread])) as found:
            if found is not None:  # read with the lock, in one round trip: settings_for takes it once
                settings, abandoned = found
                self._turn_settings.put(key, _settings(settings))
            if found is None or abandoned:  # after waiting for the lock the read is stale: look again, rarely
                await self.run(self.sql.recover_interrupted, None, await self.conversation_id(key))
            self._holding.add(key)
            try:
                yield
            finally:  # what this turn read and wrote vouches for nothing after it
                self._holding.discard(key)
                self._turn_settings.pop(key)
                known = self._conversations.get(key)
                if known is not None:
                    self._written.pop(known)
                    self._turn_ids.discard(known)

    # -- what platforms and commands ask --

    async def first_delivery(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False when it was seen before (a retry or a redelivery)."""
        return await self.run(self.sql.first_delivery, platform, event_id)

    async def record_feedback(self, workspace_id: int, platform_id: str, user_id: str, value: int | None) -> bool:
        return await self.run(self.sql.record_feedback, workspace_id, platform_id, user_id, value)

    async def set_setting(self, workspace_id: int, name: str, value: str | None, *, channel: str = "") -> str | None:
        self._settings.clear()  # rare; channel entries layer on workspace ones, so drop them all
        return await self.run(self.sql.set_setting, workspace_id, name, value, channel=channel)

    async def set_setting_audited(
        self, workspace_id: int, name: str, value: str | None, *, actor_id: str, channel: str = ""
    ) -> str | None:
        self._settings.clear()
        return await self.run(self.sql.set_setting_audited, workspace_id, name, value, actor_id=actor_id, channel=channel)

    async def is_participant(self, key: ConversationKey, user_id: str) -> bool:
        return await self.run(self.sql.is_participant, key, user_id)

    async def forget_conversation(self, key: ConversationKey) -> int:
        """Erase a conversation's stored messages; returns how many were removed."""
        removed, conversation = await self.run(self.sql.forget_conversation, key)
        if conversation is not None:
            self._forget_window(conversation)
        return removed

    async def forget_channel(self, platform: str, workspace: str, channel: str) -> int:
        removed, conversations = await self.run(self.sql.forget_channel, platform, workspace, channel)
        for conversation in conversations:
            self._forget_window(conversation)
        return removed

    async def delete_workspace(self, platform: str, external_id: str) -> bool:
        """Erase everything stored for a workspace (the app was uninstalled or the bot left the server)."""
        deleted = await self.run(self.sql.delete_workspace, platform, external_id)
        self._workspaces.clear()
        self._conversations.clear()
        self._settings.clear()
        self._forget_windows()
        return deleted

    async def usage_rows(self, since_day: str, workspace: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        return await self.run(reports.usage_rows, self.sql, since_day, workspace)

    async def feedback_totals(self, workspace_id: int, since: str) -> tuple[int, int]:
        return await self.run(reports.feedback_totals, self.sql, workspace_id, since)

    async def audit_log(self, workspace: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        return await self.run(reports.audit_log, self.sql, workspace)

    async def latest_thread(self, platform: str, workspace: str, channel: str) -> str | None:
        return await self.run(self.sql.latest_thread, platform, workspace, channel)

    # -- installations made by an OAuth flow (Slack's), read on every request: no cache, replicas share them --

    async def save_installation(self, app: InstalledApp) -> None:
        await self.run(installations.save, self.sql, app)

    async def find_installation(self, enterprise_id: str, team_id: str) -> InstalledApp | None:
        return await self.run(installations.find, self.sql, enterprise_id, team_id)

    async def delete_installation(self, enterprise_id: str, team_id: str) -> bool:
        return await self.run(installations.delete, self.sql, enterprise_id, team_id)

    async def installations(self) -> list[InstallationSummary]:
        return await self.run(installations.listing, self.sql)

    async def installed_apps(self) -> list[InstalledApp]:
        """Every installation with its tokens (for `chatbots doctor` to check them)."""
        return await self.run(installations.everything, self.sql)

    async def issue_oauth_state(self, state: str, expires_at: datetime) -> None:
        await self.run(installations.issue_state, self.sql, state, expires_at)

    async def consume_oauth_state(self, state: str) -> bool:
        return await self.run(installations.consume_state, self.sql, state)

    # -- periodic upkeep, in short batches so turns' statements interleave --

    async def purge(self, older_than: str) -> int:
        """Delete message text older than the cutoff, a batch at a time; the windows are reloaded afterwards."""
        removed = await self._in_batches(self.sql.purge_batch, older_than)
        if removed:
            self._forget_windows()
        return removed

    def _forget_windows(self) -> None:
        self.windows.clear()
        self._versions.clear()
        self._written.clear()

    async def purge_notices(self, older_than: str) -> int:
        """Forget which notices were sent, for periods long over, a batch at a time."""
        return await self._in_batches(self.sql.purge_notices, older_than)

    async def purge_events(self, older_than: str) -> int:
        """Forget de-duplication records older than the cutoff, a batch at a time."""
        return await self._in_batches(self.sql.purge_events, older_than)

    async def _in_batches(self, delete: Callable[[str], int], older_than: str) -> int:
        """Repeat a bounded delete until a batch comes back short; other statements run between batches."""
        removed = 0
        while True:
            batch = await self.run(delete, older_than)
            removed += batch
            if batch < PURGE_BATCH:
                return removed
