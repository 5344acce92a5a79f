"""Discord: mentions, replies, threads and DMs answered through the core."""

from .service import DiscordService

__all__ = ["DiscordService"]
