"""The read-only report queries (usage, audit, feedback, moderation log, export): one place, over the database.

Used by the operator reports (chatbots/reports.py, on the command line) and by the Store (the `/chatbot usage`
command), over either database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import SQLDatabase


_COUNT_UP = "SUM(CASE WHEN f.value = 1 THEN 1 ELSE 0 END)"
_COUNT_DOWN = "SUM(CASE WHEN f.value = -1 THEN 1 ELSE 0 END)"


def workspace_platform(db: SQLDatabase, external_id: str) -> str | None:
    """The platform a bare workspace id belongs to (operators type ids without one)."""
    row = db._run("SELECT platform FROM workspaces WHERE external_id = ? LIMIT 1", [external_id]).one()
    return row[0] if row else None


def usage_rows(db: SQLDatabase, since_day: str, workspace: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Daily usage since a day (inclusive), per workspace, user and model."""
    sql = (
        "SELECT w.platform, w.external_id AS workspace, u.day, u.user_id, u.model, u.prompt_tokens, "
        "u.completion_tokens, u.replies FROM usage_daily u JOIN workspaces w ON w.id = u.workspace_id WHERE u.day >= ?"
    )
    params: list[Any] = [since_day]
    if workspace:
        sql += " AND w.platform = ? AND w.external_id = ?"
        params += list(workspace)
    return (db.query_dicts(sql + " ORDER BY u.day, w.platform, w.external_id, u.user_id", params))


def audit_log(db: SQLDatabase, workspace: tuple[str, str] | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Settings changes, newest first: who changed what, from what to what."""
    sql = (
        "SELECT a.at, w.platform, w.external_id AS workspace, a.channel, a.actor_id, a.setting, a.old_value, a.new_value "
        "FROM audit a JOIN workspaces w ON w.id = a.workspace_id"
    )
    params: list[Any] = []
    if workspace:
        sql += " WHERE w.platform = ? AND w.external_id = ?"
        params += list(workspace)
    return db.query_dicts(sql + " ORDER BY a.id DESC LIMIT ?", [*params, limit])


def feedback_totals(db: SQLDatabase, workspace_id: int, since: str) -> tuple[int, int]:
    """(thumbs up, thumbs down) on a workspace's replies since a time."""
    row = db._run(
        f"SELECT COALESCE({_COUNT_UP}, 0), COALESCE({_COUNT_DOWN}, 0) FROM feedback f "
        "JOIN messages m ON m.id = f.message_id JOIN conversations c ON c.id = m.conversation_id "
        "WHERE c.workspace_id = ? AND f.at >= ?",
        [workspace_id, since],
    ).one()
    assert row is not None
    return int(row[0]), int(row[1])


def downvoted(db: SQLDatabase, since: str) -> list[dict[str, Any]]:
    """Replies voted down since a time, with the question they answered: what admins read to tune instructions."""
    return db.query_dicts(
        f"""SELECT w.platform, w.external_id AS workspace, c.channel, m.created_at AS answered_at,
                  (SELECT q.text FROM messages q WHERE q.conversation_id = m.conversation_id AND q.id < m.id
                     AND q.role = 'user' ORDER BY q.id DESC LIMIT 1) AS question,
                  m.text AS answer, {_COUNT_DOWN} AS down, {_COUNT_UP} AS up
           FROM feedback f JOIN messages m ON m.id = f.message_id
           JOIN conversations c ON c.id = m.conversation_id JOIN workspaces w ON w.id = c.workspace_id
           WHERE f.at >= ? GROUP BY m.id, w.platform, w.external_id, c.channel HAVING {_COUNT_DOWN} > 0
           ORDER BY m.id DESC""",
        [since],
    )


def moderation_log(db: SQLDatabase, since: str, flagged_only: bool = False) -> list[dict[str, Any]]:
    """Moderation decisions since a time, newest first (only the blocked ones with flagged_only)."""
    sql = (
        "SELECT l.at, w.platform, w.external_id AS workspace, c.channel, c.thread, l.direction, l.decision, "
        "l.categories, l.text FROM moderation_log l JOIN workspaces w ON w.id = l.workspace_id "
        "LEFT JOIN conversations c ON c.id = l.conversation_id WHERE l.at >= ?"
    )
    if flagged_only:
        sql += " AND l.decision != 'passed'"
    return db.query_dicts(sql + " ORDER BY l.id DESC", [since])


def workspace_messages(db: SQLDatabase, platform: str, external_id: str) -> Iterator[dict[str, Any]]:
    """Every stored message of a workspace, conversation by conversation, oldest first, a page at a time."""
    after = (-1, -1)
    while True:
        page = db.query_dicts(
            "SELECT c.id AS conversation, c.channel, c.thread, m.id, m.role, m.text, m.author_id, m.author_name, "
            "m.platform_id, m.model, m.prompt_tokens, m.completion_tokens, m.status, m.created_at, m.file_tokens "
            "FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id JOIN workspaces w ON w.id = c.workspace_id "
            "WHERE w.platform = ? AND w.external_id = ? AND m.status != 'streaming' AND (c.id, m.id) > (?, ?) "
            "ORDER BY c.id, m.id LIMIT 1000",
            [platform, external_id, *after],
        )
        with_files = db.message_files([row["id"] for row in page if row["file_tokens"]])
        for row in page:
            exported = {key: value for key, value in row.items() if key not in ("conversation", "file_tokens")}
            if row["id"] in with_files:  # images as their data: URLs, read text headed by the file's name
                exported["files"] = [{"kind": file.kind, "name": file.name, "mimetype": file.mimetype,
                                      "content": file.content} for file in with_files[row["id"]]]
            yield exported
        if len(page) < 1000:
            return
        after = (page[-1]["conversation"], page[-1]["id"])


def channel_usage(
    db: SQLDatabase, since: str, until: str | None = None, workspace: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """Answers' tokens from since (until before until) per workspace, channel and model, from the stored answers
    (so within retention)."""
    sql = (
        "SELECT w.platform, w.external_id AS workspace, c.channel, m.model, COUNT(*) AS replies, "
        "SUM(m.prompt_tokens) AS prompt_tokens, SUM(m.completion_tokens) AS completion_tokens "
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id JOIN workspaces w ON w.id = c.workspace_id "
        "WHERE m.role = 'assistant' AND m.prompt_tokens IS NOT NULL AND m.created_at >= ?"
    )
    params: list[Any] = [since]
    if until:
        sql += " AND m.created_at < ?"
        params.append(until)
    if workspace:
        sql += " AND w.platform = ? AND w.external_id = ?"
        params += list(workspace)
    return db.query_dicts(sql + " GROUP BY w.platform, w.external_id, c.channel, m.model ORDER BY 1, 2, 3, 4", params)


def workspace_budgets(db: SQLDatabase, workspace: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Each workspace's money budget settings (platform, workspace, name, value)."""
    sql = (
        "SELECT w.platform, w.external_id AS workspace, s.name, s.value FROM settings s "
        "JOIN workspaces w ON w.id = s.workspace_id WHERE s.channel = '' AND s.name LIKE 'budget_workspace_%'"
    )
    params: list[Any] = []
    if workspace:
        sql += " AND w.platform = ? AND w.external_id = ?"
        params += list(workspace)
    return db.query_dicts(sql + " ORDER BY 1, 2, 3", params)
