"""Schema history. Each migration runs once, in order, inside a transaction; never edit one that shipped."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("chatbots")


@migrations()
def m001_initial(db: Database) -> None:
    """Everything the conversation core needs, indexed for the per-message hot path."""
    db.execute(
        """CREATE TABLE workspaces (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            external_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (platform, external_id)
        )"""
    )
    # One row per setting, workspace-wide when channel is '', so new settings need no migration.
    db.execute(
        """CREATE TABLE settings (
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            channel TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (workspace_id, channel, name)
        )"""
    )
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (workspace_id, channel, thread)
        )"""
    )
    # tokens: the message's size in the prompt, counted once on the way in so no turn recounts history.
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            author_id TEXT,
            author_name TEXT,
            platform_id TEXT,
            model TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            status TEXT NOT NULL DEFAULT 'ok',
            created_at TEXT NOT NULL
        )"""
    )
    # The recent window of one conversation: a range scan from the newest row, whatever the table's size.
    db.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, id)")
    # The same platform message stored twice would be answered twice.
    db.execute(
        "CREATE UNIQUE INDEX messages_platform_id ON messages (conversation_id, platform_id) "
        "WHERE platform_id IS NOT NULL AND role = 'user'"
    )
    db.execute(
        """CREATE TABLE events (
            platform TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (platform, event_id)
        )"""
    )
    db.execute("CREATE INDEX events_by_time ON events (received_at)")
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            actor_id TEXT NOT NULL,
            setting TEXT NOT NULL,
            channel TEXT NOT NULL DEFAULT '',
            old_value TEXT,
            new_value TEXT,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX audit_by_workspace ON audit (workspace_id, id)")


@migrations()
def m002_usage_and_feedback(db: Database) -> None:
    """Daily usage totals (what caps and cost reports read, and what outlives message retention),
    reactions on replies, and every platform message id a reply was split across."""
    db.execute(
        """CREATE TABLE usage_daily (
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            day TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            replies INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (workspace_id, day, user_id, model)
        )"""
    )
    db.execute(
        """CREATE TABLE reply_parts (
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            platform_id TEXT NOT NULL,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            PRIMARY KEY (workspace_id, platform_id)
        )"""
    )
    db.execute("CREATE INDEX reply_parts_by_message ON reply_parts (message_id)")
    db.execute(
        """CREATE TABLE feedback (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            value INTEGER NOT NULL CHECK (value IN (-1, 1)),
            at TEXT NOT NULL,
            PRIMARY KEY (message_id, user_id)
        )"""
    )
    db.execute("CREATE INDEX feedback_by_time ON feedback (at)")


@migrations()
def m003_moderation_log(db: Database) -> None:
    """Every moderation decision: what was checked, which way, the verdict. Text only when an operator opts in."""
    db.execute(
        """CREATE TABLE moderation_log (
            id INTEGER PRIMARY KEY,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            decision TEXT NOT NULL CHECK (decision IN ('passed', 'flagged', 'error_blocked', 'error_allowed')),
            categories TEXT NOT NULL DEFAULT '',
            text TEXT,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX moderation_log_by_time ON moderation_log (at)")
    db.execute("CREATE INDEX messages_by_time ON messages (created_at)")
    # Answers still streaming when the process died; found at start-up without scanning every message.
    db.execute("CREATE INDEX messages_streaming ON messages (id) WHERE status = 'streaming'")


@migrations()
def m004_token_bounds(db: Database) -> None:
    """Sizes may be upper bounds counted without the tokenizer (see chatbots.tokens); earlier ones were exact."""
    db.execute("ALTER TABLE messages ADD COLUMN tokens_exact INTEGER NOT NULL DEFAULT 1")


@migrations()
def m005_answer_leases(db: Database) -> None:
    """When a streaming answer was last saved: one not saved for a while was cut off with its process."""
    db.execute("ALTER TABLE messages ADD COLUMN updated_at TEXT")


@migrations()
def m006_jobs(db: Database) -> None:
    """When each periodic job last ran: one process claims a run, however many share the database."""
    db.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, last_run TEXT NOT NULL)")


@migrations()
def m007_shared_limits(db: Database) -> None:
    """Caps' state for replicas sharing one database: reservations of answers in progress, and request times.

    A single process keeps both in memory; the tables exist in every schema so the two stay alike."""
    db.execute(
        """CREATE TABLE reservations (
            id INTEGER PRIMARY KEY,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            day TEXT NOT NULL,
            user_id TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX reservations_by_day ON reservations (workspace_id, day, user_id)")
    db.execute(
        """CREATE TABLE requests (
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX requests_by_user ON requests (workspace_id, user_id, at)")


@migrations()
def m008_window_versions(db: Database) -> None:
    """A counter each change to a conversation's window bumps: replicas keep windows in memory and check it.

    One process owning a SQLite file keeps its windows current by its own writes; the column keeps schemas alike."""
    db.execute("ALTER TABLE conversations ADD COLUMN version INTEGER NOT NULL DEFAULT 0")


@migrations()
def m009_message_files(db: Database) -> None:
    """Files shared with a message, as the model reads them, so follow-ups can ask about them; erased with it.

    messages.file_tokens is their size in the prompt (inside tokens): a window whose messages all have 0 reads no
    files at all, so text-only conversations cost what they did."""
    db.execute("ALTER TABLE messages ADD COLUMN file_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """CREATE TABLE message_files (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('text', 'image', 'note')),
            name TEXT NOT NULL,
            mimetype TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            UNIQUE (message_id, position)
        )"""
    )


@migrations()
def m010_slack_installations(db: Database) -> None:
    """Slack's OAuth mode: one row per installed workspace or org (team_id '' for an org-wide install), holding
    its tokens; and the one-use states that tie an install's return to the browser that started it."""
    db.execute(
        """CREATE TABLE slack_installations (
            enterprise_id TEXT NOT NULL DEFAULT '',
            team_id TEXT NOT NULL DEFAULT '',
            is_enterprise_install INTEGER NOT NULL DEFAULT 0,
            bot_token TEXT NOT NULL,
            bot_user_id TEXT NOT NULL DEFAULT '',
            bot_id TEXT NOT NULL DEFAULT '',
            bot_scopes TEXT NOT NULL DEFAULT '',
            bot_refresh_token TEXT,
            bot_token_expires_at INTEGER,
            team_name TEXT NOT NULL DEFAULT '',
            enterprise_name TEXT NOT NULL DEFAULT '',
            app_id TEXT NOT NULL DEFAULT '',
            installer_id TEXT NOT NULL DEFAULT '',
            installed_at TEXT NOT NULL,
            PRIMARY KEY (enterprise_id, team_id)
        )"""
    )
    db.execute("CREATE TABLE slack_oauth_states (state TEXT PRIMARY KEY, expires_at TEXT NOT NULL)")


@migrations()
def m011_governance(db: Database) -> None:
    """Money budgets hold the estimated USD of answers in progress; notices are sent once per key (alerts per
    threshold and period, notes per person and day), whichever replica gets there first."""
    db.execute("ALTER TABLE reservations ADD COLUMN cost REAL NOT NULL DEFAULT 0")
    db.execute(
        """CREATE TABLE notices (
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (workspace_id, key)
        )"""
    )
