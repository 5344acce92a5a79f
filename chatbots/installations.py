"""An app installed in a workspace (or an Enterprise Grid org) by its OAuth flow: what the bot needs to answer there.

Platform-free: the Slack adapter maps its SDK's installation objects onto this record, and the store keeps it.
The tokens are secrets: they are read only to answer events, never by a report, export, log or /metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True, slots=True)
class InstalledApp:
    enterprise_id: str
    """'' outside Enterprise Grid."""
    team_id: str
    """'' for an org-wide install (is_enterprise_install), which answers in every workspace of the org."""
    is_enterprise_install: bool
    bot_token: str
    bot_user_id: str
    bot_id: str = ""
    bot_scopes: str = ""
    """Comma-separated, as Slack grants them."""
    bot_refresh_token: str | None = None
    """Set when token rotation is on: the bot token expires and this one gets the next."""
    bot_token_expires_at: int | None = None
    """Unix seconds."""
    team_name: str = ""
    enterprise_name: str = ""
    app_id: str = ""
    installer_id: str = ""
    installed_at: str = ""
    """ISO UTC time, set by the store when the installation is first saved; later saves keep it."""


@dataclass(frozen=True, slots=True)
class InstallationSummary:
    """What an operator may see of an installation: never its tokens."""

    enterprise_id: str
    team_id: str
    is_enterprise_install: bool
    team_name: str
    enterprise_name: str
    bot_user_id: str
    installer_id: str
    installed_at: str


class Installations:
    """What platforms may do with installations: the engine hands this out, so adapters never hold the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def now(self) -> datetime:
        return self._store.clock()

    async def save(self, app: InstalledApp) -> None:
        await self._store.save_installation(app)

    async def find(self, enterprise_id: str, team_id: str) -> InstalledApp | None:
        return await self._store.find_installation(enterprise_id, team_id)

    async def delete(self, enterprise_id: str, team_id: str) -> bool:
        return await self._store.delete_installation(enterprise_id, team_id)

    async def listing(self) -> list[InstallationSummary]:
        return await self._store.installations()

    async def everything(self) -> list[InstalledApp]:
        """Every installation with its tokens (for `chatbots doctor` to check each one)."""
        return await self._store.installed_apps()

    async def issue_state(self, state: str, expires_at: datetime) -> None:
        await self._store.issue_oauth_state(state, expires_at)

    async def consume_state(self, state: str) -> bool:
        return await self._store.consume_oauth_state(state)


async def installed_apps(database_url: str | None, db_path: str) -> list[InstalledApp]:
    """Every installation in the configured database, tokens included: `chatbots doctor` checks each one."""
    from .store import Store, open_database

    store = Store(await asyncio.to_thread(open_database, database_url, db_path))
    try:
        return await Installations(store).everything()
    finally:
        store.close()
