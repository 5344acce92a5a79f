"""Usage caps and rate limits: reserve before the model is called, settle with the real usage after.

Reservations live in memory so concurrent requests see each other before any of them finishes: ten
simultaneous mentions from a user with room for one answer cannot all pass. Daily totals are read from the
store once per workspace and day, then kept current here (one process owns a database).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .clock import Clock
from .store import Store
from .types import Usage


@dataclass(frozen=True, slots=True)
class Caps:
    user_daily: int = 0
    workspace_daily: int = 0
    per_minute: int = 0
    """0 means no limit, for each."""

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Caps:
        return cls(
            int(settings.get("limit_user") or 0),
            int(settings.get("limit_workspace") or 0),
            int(settings.get("limit_rate") or 0),
        )


@dataclass(frozen=True, slots=True)
class Admission:
    workspace_id: int
    user_id: str
    day: str
    reserved: int


class Refused(Exception):
    """Over a cap: the message says which one and when it resets."""


def _until(now: datetime, then: datetime) -> str:
    minutes = max(1, int((then - now).total_seconds() + 59) // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class UsageLimits:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._used: dict[tuple[int, str], dict[str, int]] = {}
        self._reserved: dict[tuple[int, str, str], int] = {}
        self._recent: dict[tuple[int, str], deque[datetime]] = {}

    async def used_today(self, workspace_id: int, day: str) -> dict[str, int]:
        """Tokens per user today in a workspace (loaded once a day, then kept current)."""
        found = self._used.get((workspace_id, day))
        if found is None:
            if len(self._used) > 10_000:
                self._used.clear()
            found = self._used[(workspace_id, day)] = await self.store.day_usage(workspace_id, day)
        return found

    async def admit(self, workspace_id: int, user_id: str, caps: Caps, estimate: int) -> Admission:
        """Reserve estimate tokens for one reply, or raise Refused naming the limit and its reset."""
        now = self.clock()
        day = now.date().isoformat()
        if caps.per_minute:
            recent = self._recent.setdefault((workspace_id, user_id), deque())
            while recent and now - recent[0] >= timedelta(minutes=1):
                recent.popleft()
            if len(recent) >= caps.per_minute:
                wait = int((recent[0] + timedelta(minutes=1) - now).total_seconds()) + 1
                raise Refused(
                    f"You're sending requests faster than this workspace allows ({caps.per_minute} per minute). "
                    f"Try again in {wait} s."
                )
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        used = await self.used_today(workspace_id, day)
        if caps.user_daily:
            mine = used.get(user_id, 0) + self._reserved.get((workspace_id, day, user_id), 0)
            if mine >= caps.user_daily:
                raise Refused(
                    f"You've used your daily allowance of {caps.user_daily:,} tokens in this workspace. "
                    f"It resets at midnight UTC (in {_until(now, midnight)})."
                )
        if caps.workspace_daily:
            everyone = sum(used.values()) + sum(
                tokens for (ws, reserved_day, _), tokens in self._reserved.items() if ws == workspace_id and reserved_day == day
            )
            if everyone >= caps.workspace_daily:
                raise Refused(
                    f"This workspace has used its daily allowance of {caps.workspace_daily:,} tokens. "
                    f"It resets at midnight UTC (in {_until(now, midnight)})."
                )
        if caps.per_minute:
            self._recent[(workspace_id, user_id)].append(now)
        slot = (workspace_id, day, user_id)
        self._reserved[slot] = self._reserved.get(slot, 0) + estimate
        return Admission(workspace_id, user_id, day, estimate)

    async def settle(self, admission: Admission, model: str, usage: Usage | None) -> None:
        """Release the reservation and count what the reply really used (nothing, if it failed before usage)."""
        slot = (admission.workspace_id, admission.day, admission.user_id)
        left = self._reserved.get(slot, 0) - admission.reserved
        if left > 0:
            self._reserved[slot] = left
        else:
            self._reserved.pop(slot, None)
        if usage is None:
            return
        await self.store.record_usage(
            admission.workspace_id, admission.user_id, admission.day, model, usage.prompt_tokens, usage.completion_tokens
        )
        used = await self.used_today(admission.workspace_id, admission.day)
        used[admission.user_id] = used.get(admission.user_id, 0) + usage.total

    async def remaining(self, workspace_id: int, user_id: str, caps: Caps) -> int | None:
        """Tokens this user may still use today (None when no daily cap applies)."""
        used = await self.used_today(workspace_id, self.clock().date().isoformat())
        limits = []
        if caps.user_daily:
            limits.append(caps.user_daily - used.get(user_id, 0))
        if caps.workspace_daily:
            limits.append(caps.workspace_daily - sum(used.values()))
        return max(0, min(limits)) if limits else None
