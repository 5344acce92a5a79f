"""Who a Slack user is (display name, admin or not), from users.info.

Cached for two minutes: a busy thread costs no calls, and a demoted admin loses their rights soon after.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatbots.failure_log import FailureLog
from chatbots.lru import LRU

from .errors import report

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlackUser:
    id: str
    name: str
    is_admin: bool


class UserDirectory:
    def __init__(self, client: AsyncWebClient, ttl: float = 120.0, max_entries: int = 20_000,
                 failures: FailureLog | None = None) -> None:
        self.client = client
        self.failures = failures or FailureLog()
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: LRU[tuple[str, str], tuple[float, SlackUser]] = LRU(max_entries)

    def known(self, team_id: str, user_id: str) -> SlackUser | None:
        """The user if already looked up, without a call: a new question never waits on (or costs) a read."""
        cached = self._cache.get((team_id, user_id))
        return cached[1] if cached else None

    async def get(self, team_id: str, user_id: str, client: AsyncWebClient | None = None) -> SlackUser:
        """The user, or a stand-in named by id when Slack cannot say (never fails a turn). client: the workspace's
        own (OAuth mode), else the directory's."""
        now = time.monotonic()
        cached = self._cache.get((team_id, user_id))
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        try:
            response = await (client or self.client).users_info(user=user_id)
            user = response["user"]
            profile = user.get("profile") or {}
            found = SlackUser(
                user_id,
                profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name") or user_id,
                bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")),
            )
        except SlackApiError as error:
            report(self.failures, "users.info", error)
            return SlackUser(user_id, user_id, False)
        except (KeyError, TypeError) as error:
            log.info("users.info unavailable: %s", type(error).__name__)
            return SlackUser(user_id, user_id, False)
        self._cache.put((team_id, user_id), (now, found))
        return found
