"""An app installed in a workspace (or an Enterprise Grid org) by its OAuth flow: what the bot needs to answer there.

Platform-free: the Slack adapter maps its SDK's installation objects onto this record, and the store keeps it.
The tokens are secrets: they are read only to answer events, never by a report, export, log or /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass


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
