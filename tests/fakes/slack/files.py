"""Shared files: Slack's file objects, their downloads on the fake's own host:port, and files.info.

Wire facts (Slack's file object and message.file_share references):
- Events carry ``files[]`` on ``message`` (subtype ``file_share``, with ``upload: true``) and ``app_mention``.
  A hosted file has ``url_private`` (``https://files.slack.com/files-pri/T-F/name``) and ``url_private_download``
  (``.../files-pri/T-F/download/name``); both need ``Authorization: Bearer <token>`` with ``files:read``.
- Real Slack answers a download without a valid token with 200 and its HTML login page (other people's
  measurements; see NOTES). This fake answers 401 by default, and the login page when ``file_login_page`` is set.
- ``mode`` is ``hosted``, ``snippet``, ``post``, ``external`` (``is_external: true``, ``url_private`` is the
  external service's address), ``tombstone`` (deleted: only ``id`` and ``mode`` remain) or ``hidden_by_limit``
  (free workspaces over their storage limit: likewise redacted). Files from another organisation in a Slack
  Connect channel may arrive as ``{"id", "file_access": "check_file_info"}``, to be looked up with files.info.

Here the files live at ``http://127.0.0.1:PORT/files-pri/...``, the same origin as ``api_url``; every download
is recorded in ``file_downloads`` with its Authorization header.
"""

from __future__ import annotations

import struct
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..file_hosting import DownloadRequest, FileHosting
from .records import Call, _ApiError

if TYPE_CHECKING:
    from . import FakeSlack

_FILETYPES = {
    "image/png": ("png", "PNG"), "image/jpeg": ("jpg", "JPEG"), "image/gif": ("gif", "GIF"),
    "image/webp": ("webp", "WebP"), "application/pdf": ("pdf", "PDF"), "text/plain": ("text", "Plain Text"),
    "text/csv": ("csv", "CSV"), "application/json": ("json", "JSON"), "application/zip": ("zip", "Zip"),
    "video/mp4": ("mp4", "MPEG 4 Video"),
}
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


class SlackFiles:
    """Mixin for FakeSlack: ``add_file`` / ``tombstone_file`` / ``external_file`` build file objects to put in
    events; the files are served on the fake's port; ``file_downloads`` records each request."""

    hosting: FileHosting
    file_login_page: bool
    _file_ids: int
    _files: dict[str, dict[str, Any]]

    def _init_files(self) -> None:
        self.hosting = FileHosting(self._changed)  # type: ignore[attr-defined]
        self.file_login_page = False
        """Answer unauthenticated downloads as real Slack does (200 + HTML login page) instead of 401."""
        self._file_ids = 0
        self._files = {}

    @property
    def file_downloads(self) -> list[DownloadRequest]:
        return self.hosting.requests

    @property
    def files_url(self) -> str:
        """Where this fake's files live (Slack's is https://files.slack.com)."""
        return f"http://127.0.0.1:{self.port}"  # type: ignore[attr-defined]

    def add_file(self: FakeSlack, name: str, content: bytes, mimetype: str = "application/octet-stream", *,
                 user: str = "U1", size: int | None = None) -> dict[str, Any]:
        """Upload a file: it is served from now on; returns its file object (as events carry it).

        ``size`` overrides the reported size (a payload may say anything)."""
        self._file_ids += 1
        file_id = f"F{self._file_ids:08d}"
        quoted = urllib.parse.quote(name)
        base = f"/files-pri/{self.team_id}-{file_id}"
        self.hosting.put(f"{base}/{quoted}", content, mimetype)
        self.hosting.put(f"{base}/download/{quoted}", content, mimetype)
        filetype, pretty = _FILETYPES.get(mimetype, ("binary", "Binary"))
        now = int(time.time())
        obj: dict[str, Any] = {
            "id": file_id, "created": now, "timestamp": now, "name": name, "title": name, "mimetype": mimetype,
            "filetype": filetype, "pretty_type": pretty, "user": user, "user_team": self.team_id, "editable": False,
            "size": len(content) if size is None else size, "mode": "hosted", "is_external": False,
            "external_type": "", "is_public": False, "public_url_shared": False, "display_as_bot": False,
            "username": "", "url_private": f"{self.files_url}{base}/{quoted}",
            "url_private_download": f"{self.files_url}{base}/download/{quoted}",
            "media_display_type": "unknown",
            "permalink": f"https://fake.slack.com/files/{user}/{file_id}/{quoted}",
            "permalink_public": f"https://slack-files.com/{self.team_id}-{file_id}-0a1b2c3d4e",
            "is_starred": False, "has_rich_preview": False, "file_access": "visible",
        }
        dimensions = _png_size(content) if mimetype == "image/png" else None
        if dimensions is not None:
            width, height = dimensions
            obj.update(original_w=width, original_h=height, image_exif_rotation=1,
                       thumb_64=f"{self.files_url}/files-tmb/{self.team_id}-{file_id}-0a1b2c/{quoted}_64.png",
                       thumb_360=f"{self.files_url}/files-tmb/{self.team_id}-{file_id}-0a1b2c/{quoted}_360.png",
                       thumb_360_w=min(width, 360), thumb_360_h=min(height, 360))
        self._files[file_id] = obj
        return dict(obj)

    @staticmethod
    def tombstone_file(file_id: str = "F0DELETED", mode: str = "tombstone") -> dict[str, Any]:
        """A deleted file (``mode="hidden_by_limit"``: one hidden by a free workspace's storage limit)."""
        return {"id": file_id, "mode": mode}

    @staticmethod
    def external_file(name: str, url: str, mimetype: str = "application/pdf") -> dict[str, Any]:
        """A file stored elsewhere (Google Drive, Dropbox) and shared into Slack: its URLs point there."""
        now = int(time.time())
        return {
            "id": "F0EXTERNAL", "created": now, "timestamp": now, "name": name, "title": name, "mimetype": mimetype,
            "filetype": "gdoc", "pretty_type": "Google Doc", "user": "U1", "editable": False, "size": 0,
            "mode": "external", "is_external": True, "external_type": "gdrive", "is_public": False,
            "public_url_shared": False, "display_as_bot": False, "username": "", "url_private": url,
            "external_url": url, "permalink": url, "has_rich_preview": False, "file_access": "visible",
        }

    def check_file_info(self, file_object: dict[str, Any]) -> dict[str, Any]:
        """The redacted form a Slack Connect event may carry for this file: look it up with files.info."""
        return {"id": file_object["id"], "file_access": "check_file_info", "created": file_object["created"],
                "timestamp": file_object["timestamp"], "user": file_object["user"]}

    def _files_info(self, call: Call) -> dict[str, Any]:
        found = self._files.get(str(call.args.get("file", "")))
        if found is None:
            raise _ApiError("file_not_found")
        return {"file": dict(found), "comments": [], "response_metadata": {"next_cursor": ""}}

    async def _handle_file(self: FakeSlack, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        refuse = None
        if not token.removeprefix("xoxe.").startswith("xoxb-") or token in self.revoked_tokens \
                or self._token_refused(token):  # type: ignore[attr-defined]
            refuse = (web.Response(body=LOGIN_PAGE, content_type="text/html") if self.file_login_page
                      else web.Response(status=401, text="Unauthorized"))
        return await self.hosting.serve(request, request.rel_url.raw_path, refuse=refuse)


def _png_size(content: bytes) -> tuple[int, int] | None:
    if content[:8] != b"\x89PNG\r\n\x1a\n" or len(content) < 24:
        return None
    width, height = struct.unpack(">II", content[16:24])
    return int(width), int(height)
