"""Files shared on Slack: the `files` of a message or mention event, as SharedFiles fetched with the bot token.

Slack's file URLs (`url_private_download`, else `url_private`) need `Authorization: Bearer <bot token>` and the
`files:read` scope. Without them Slack answers 200 with its HTML login page instead of the file, so that page
is read as a refusal. The token only ever goes to Slack's own file host (or the configured SLACK_API_URL's
origin): the Downloader refuses every other address, redirects included.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.types import SharedFile

from ..downloads import Downloader, FileHosts, file_name, file_size, unavailable

log = logging.getLogger(__name__)

SLACK_FILE_HOSTS = ("files.slack.com",)
MAX_LOOKUPS = 10
"""files.info calls for one message's withheld files (Slack allows 10 files a message); beyond, they are named."""
REFUSED_AS_LOGIN_PAGE = "Slack refused: the app needs the files:read scope"
_UNREADABLE_MODES = {
    "tombstone": "it was deleted",
    "hidden_by_limit": "it is hidden by the workspace's file storage limit",
}


class SlackFiles:
    """Turns Slack file objects into SharedFiles for one Slack service (one download session for them all)."""

    def __init__(self, bot_token: str, api_url: str | None) -> None:
        self.downloads = Downloader(
            FileHosts.of("Slack", SLACK_FILE_HOSTS, api_url),
            {"Authorization": f"Bearer {bot_token}"},
            refused_as_html=REFUSED_AS_LOGIN_PAGE,
        )

    def shared(self, files: object, token: str | None = None) -> tuple[SharedFile, ...]:
        """The event's `files` field (anything, from a payload) as SharedFiles, in order; entries that are not
        objects are skipped. token: the bot token of the workspace that shared them (OAuth mode), else the service's."""
        if not isinstance(files, list):
            return ()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return tuple(self._one(item, headers) for item in files if isinstance(item, dict))

    @staticmethod
    def named(files: object, reason: str) -> tuple[SharedFile, ...]:
        """The `files` field as SharedFiles never fetched: the model is told each was there, and why it was not read."""
        if not isinstance(files, list):
            return ()
        return tuple(
            unavailable(file_name(item.get("name"), fallback=file_name(item.get("title"))),
                        item["mimetype"] if isinstance(item.get("mimetype"), str) else "", file_size(item.get("size")),
                        reason)
            for item in files if isinstance(item, dict)
        )

    async def looked_up(self, files: object, client: AsyncWebClient) -> object:
        """The `files` field with each withheld entry (`file_access: check_file_info`, as Slack Connect sends files
        from another organisation) replaced by what files.info says of it; entries it will not show stay as they are.
        """
        if not isinstance(files, list) or not any(_withheld(item) for item in files):
            return files
        found: list[object] = []
        lookups = 0
        for item in files:
            if _withheld(item) and lookups < MAX_LOOKUPS:
                lookups += 1
                item = await self._info(item, client)
            found.append(item)
        return found

    @staticmethod
    async def _info(item: dict[str, Any], client: AsyncWebClient) -> dict[str, Any]:
        try:
            response = await client.files_info(file=str(item.get("id", "")))
        except SlackApiError as error:
            log.info("files.info refused a shared file (%s)", error.response.get("error"))
            return item
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.info("files.info failed (%s)", type(error).__name__)
            return item
        details = response.get("file")
        return details if isinstance(details, dict) and not _withheld(details) else item

    def _one(self, item: dict[str, Any], headers: dict[str, str] | None) -> SharedFile:
        name = file_name(item.get("name"), fallback=file_name(item.get("title")))
        raw_type = item.get("mimetype")
        mimetype = raw_type if isinstance(raw_type, str) else ""
        size = file_size(item.get("size"))
        mode = item.get("mode")
        if isinstance(mode, str) and mode in _UNREADABLE_MODES:
            return unavailable(name, mimetype, size, _UNREADABLE_MODES[mode])
        if _withheld(item):
            return unavailable(name, mimetype, size, "Slack would not show it to the bot (a file from another "
                                                     "organisation)")
        if mode == "external" or item.get("is_external") is True:
            return unavailable(name, mimetype, size, "it is stored outside Slack (an external file)")
        url = item.get("url_private_download") or item.get("url_private")
        return self.downloads.file(name, mimetype, size, url, headers)

    async def close(self) -> None:
        await self.downloads.close()


def _withheld(item: object) -> bool:
    return isinstance(item, dict) and item.get("file_access") == "check_file_info"
