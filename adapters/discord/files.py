"""Files shared on Discord: a message's attachments as SharedFiles, fetched from Discord's CDN.

Attachment URLs are signed CDN links that need no token, so nothing secret is ever sent. They are fetched only
from Discord's own CDN hosts (or the configured DISCORD_API_URL's origin): a Discord-compatible server or proxy
could put any address in a payload, and the Downloader refuses every other one, redirects included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatbots.types import SharedFile

from ..downloads import Downloader, FileHosts, file_name, file_size

DISCORD_FILE_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


class DiscordFiles:
    """Turns discord.py Attachments into SharedFiles for one Discord service (one download session for them all)."""

    def __init__(self, api_url: str | None) -> None:
        self.downloads = Downloader(FileHosts.of("Discord", DISCORD_FILE_HOSTS, api_url))

    def shared(self, attachments: Iterable[Any]) -> tuple[SharedFile, ...]:
        return tuple(self._one(attachment) for attachment in attachments)

    def _one(self, attachment: Any) -> SharedFile:
        content_type = getattr(attachment, "content_type", None)
        return self.downloads.file(
            file_name(getattr(attachment, "filename", None)),
            content_type if isinstance(content_type, str) else "",
            file_size(getattr(attachment, "size", None)),
            getattr(attachment, "url", None),
        )

    async def close(self) -> None:
        await self.downloads.close()
