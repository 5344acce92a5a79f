"""Installations made by an OAuth flow, and the one-use states that guard it: SQL for both backends.

An installation is keyed by (enterprise_id, team_id), '' standing for "none": an org-wide install has team_id ''.
Saving again (a reinstall, or rotated tokens) replaces the row but keeps the time it was first installed.
"""

from __future__ import annotations

from datetime import datetime

from ..clock import iso
from ..installations import InstallationSummary, InstalledApp
from .base import SQLDatabase

COLUMNS = ("enterprise_id", "team_id", "is_enterprise_install", "bot_token", "bot_user_id", "bot_id", "bot_scopes",
           "bot_refresh_token", "bot_token_expires_at", "team_name", "enterprise_name", "app_id", "installer_id",
           "installed_at")
SUMMARY = ("enterprise_id", "team_id", "is_enterprise_install", "team_name", "enterprise_name", "bot_user_id",
           "installer_id", "installed_at")
"""The columns a listing reads: the tokens are never selected for it."""


def save(sql: SQLDatabase, app: InstalledApp) -> None:
    values = [app.enterprise_id, app.team_id, int(app.is_enterprise_install), app.bot_token, app.bot_user_id,
              app.bot_id, app.bot_scopes, app.bot_refresh_token, app.bot_token_expires_at, app.team_name,
              app.enterprise_name, app.app_id, app.installer_id, app.installed_at or sql._now()]
    updated = [column for column in COLUMNS if column not in ("enterprise_id", "team_id", "installed_at")]
    sql._run(
        f"INSERT INTO slack_installations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
        f"ON CONFLICT (enterprise_id, team_id) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in updated),
        values,
    )


def find(sql: SQLDatabase, enterprise_id: str, team_id: str) -> InstalledApp | None:
    row = sql._run(
        f"SELECT {', '.join(COLUMNS)} FROM slack_installations WHERE enterprise_id = ? AND team_id = ?",
        [enterprise_id, team_id],
    ).one()
    if row is None:
        return None
    fields = dict(zip(COLUMNS, row))
    fields["is_enterprise_install"] = bool(fields["is_enterprise_install"])
    return InstalledApp(**fields)


def everything(sql: SQLDatabase) -> list[InstalledApp]:
    """Every installation with its tokens: for `chatbots doctor` to check each one, never to print."""
    keys = sql._run("SELECT enterprise_id, team_id FROM slack_installations ORDER BY enterprise_id, team_id").rows
    return [found for enterprise, team in keys if (found := find(sql, enterprise, team)) is not None]


def delete(sql: SQLDatabase, enterprise_id: str, team_id: str) -> bool:
    return sql._run("DELETE FROM slack_installations WHERE enterprise_id = ? AND team_id = ?",
                    [enterprise_id, team_id]).rowcount > 0


def listing(sql: SQLDatabase) -> list[InstallationSummary]:
    rows = sql._run(f"SELECT {', '.join(SUMMARY)} FROM slack_installations ORDER BY installed_at, enterprise_id, team_id").rows
    summaries = []
    for row in rows:
        fields = dict(zip(SUMMARY, row))
        fields["is_enterprise_install"] = bool(fields["is_enterprise_install"])
        summaries.append(InstallationSummary(**fields))
    return summaries


def issue_state(sql: SQLDatabase, state: str, expires_at: datetime) -> None:
    """Remember a state handed to a browser; expired ones are dropped on the way (they are few and short-lived)."""
    with sql.transaction():
        sql._run("DELETE FROM slack_oauth_states WHERE expires_at < ?", [sql._now()])
        sql._run("INSERT INTO slack_oauth_states (state, expires_at) VALUES (?, ?)", [state, iso(expires_at)])


def consume_state(sql: SQLDatabase, state: str) -> bool:
    """True once for a state that was issued and has not expired: a second use, by any process, is refused."""
    row = sql._run("DELETE FROM slack_oauth_states WHERE state = ? RETURNING expires_at", [state]).one()
    return row is not None and str(row[0]) >= sql._now()
