"""Usage caps and rate limits. A daily cap is a ceiling: no set of requests, however concurrent, overruns it.

A request is admitted only if what was used today, plus what answers still being written have reserved, plus
this request's prompt and its output limit fit under every daily cap that applies. The output limit, sent to
the model, is shrunk to what is left, and the real usage replaces the reservation when the answer ends.
With one process on a SQLite file, reservations and request times live in memory (concurrent requests see
each other before any of them finishes) and daily totals are read once per workspace and day, then kept
current here. When replicas share the database (store.shared) all of it lives there instead: each admission
reads and reserves in one transaction under the workspace's lock, so two replicas cannot both take the last room.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from .budgets import Budgets, Spend, first_of_month, month_of, next_midnight, next_month, spend_of, usd
from .clock import Clock, iso
from .config import Config
from .pricing import PriceList
from .store import Store, UsageRecord, UsageSnapshot
from .types import ConversationKey, Usage

MIN_ANSWER_TOKENS = 32
"""The smallest output limit worth sending: with less room left a request is refused, not answered with a stub."""
MAX_CAP = 10**12
"""Largest daily token cap a command accepts (matches the Discord command's range)."""
MAX_RATE = 10_000
"""Largest requests-per-minute cap a command accepts."""
MAX_TRACKED_DAYS = 10_000
"""Workspace-days of usage totals kept in memory at most."""
RESERVATION_LEASE = timedelta(minutes=15)
"""With a shared database, a reservation older than this (or than the answer lease, if longer) stops counting: its
replica was killed before settling. Longer than answers stream, which their output limit bounds."""
_MINUTE = timedelta(minutes=1)
_SPENT = 1e-12
"""USD a request needs at least, before its model is known: with nothing left of a budget it is refused early."""


def parse_count(text: str | None, maximum: int) -> int | None:
    """A whole number of 0 or more in ASCII digits (no signs, spaces, superscripts or other scripts' digits), at most
    maximum; None otherwise. The length is checked first, so a huge digit string costs nothing to refuse."""
    if text is None or not 0 < len(text) <= len(str(maximum)) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= maximum else None


@dataclass(frozen=True, slots=True)
class Caps:
    user_daily: int = 0
    workspace_daily: int = 0
    per_minute: int = 0
    """0 means no limit, for each."""

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Caps:
        def cap(name: str) -> int:
            return parse_count(settings.get(name), 10**18) or 0  # commands stored it; only garbage reads as none

        return cls(cap("limit_user"), cap("limit_workspace"), cap("limit_rate"))

    @property
    def daily(self) -> bool:
        return bool(self.user_daily or self.workspace_daily)

    def doubled(self) -> Caps:
        """What the fallback model may use up to: twice each daily allowance (the rate stays)."""
        return Caps(self.user_daily * 2, self.workspace_daily * 2, self.per_minute)

    def stricter(self, other: Caps) -> Caps:
        """Both sets layered: for each cap the lower one that is set wins."""

        def lower(a: int, b: int) -> int:
            return min(a, b) if a and b else a or b

        return Caps(
            lower(self.user_daily, other.user_daily),
            lower(self.workspace_daily, other.workspace_daily),
            lower(self.per_minute, other.per_minute),
        )


def is_direct(key: ConversationKey) -> bool:
    """A direct-message conversation, as both adapters key them.

    Discord DMs share the workspace "dm" (there is no server); Slack DMs are IM channels, whose ids start with D,
    in the team's own workspace. Derived from the key, so every message and command in a DM is seen as one.
    """
    if key.platform == "discord":
        return key.workspace == "dm"
    return key.platform == "slack" and key.channel.startswith("D")


def direct_caps(settings: Config) -> Caps:
    """The caps an operator sets for every direct-message conversation (CHATBOTS_DM_LIMIT_*)."""
    return Caps(user_daily=settings.dm_limit_user or 0, per_minute=settings.dm_limit_rate or 0)


def caps_for(key: ConversationKey, stored: dict[str, str], settings: Config) -> Caps:
    """The caps in force in a conversation: the workspace's, and in DMs the operator's too (the stricter wins)."""
    caps = Caps.from_settings(stored)
    return caps.stricter(direct_caps(settings)) if is_direct(key) else caps


@dataclass(frozen=True, slots=True)
class Admission:
    workspace_id: int
    user_id: str
    day: str
    reserved: int
    output_limit: int | None
    """The most tokens the answer may use, to send to the model; None when no cap applies and none is configured."""
    reservation: int | None = None
    """The reservation's row when the database is shared (None: held in memory, or nothing to hold)."""
    cost: float = 0.0
    """USD held under money budgets (in memory only; a shared database holds it in the reservation's row)."""


class Refused(Exception):
    """Over a cap: the message says which one and when it resets."""

    def __init__(self, message: str, allowance: bool = True, limit: str = "") -> None:
        super().__init__(message)
        self.allowance = allowance
        """An allowance (tokens or money) is used up, as opposed to the rate: a fallback model may answer."""
        self.limit = limit
        """Which: 'rate', 'tokens:user', 'tokens:workspace', 'money:user', 'money:workspace' or 'money:month';
        ':too-small' added when the limit is smaller than one request, rather than used up."""


@dataclass(frozen=True, slots=True)
class _MoneyRoom:
    scope: str
    """'user', 'workspace' or 'month'."""
    budget: float
    left: float
    held: float


def _money_rooms(budgets: Budgets, spend: Spend) -> list[_MoneyRoom]:
    rooms = []
    if budgets.user_day:
        rooms.append(_MoneyRoom("user", budgets.user_day, budgets.user_day - spend.user_day - spend.held_user_day,
                                spend.held_user_day))
    if budgets.workspace_day:
        rooms.append(_MoneyRoom("workspace", budgets.workspace_day,
                                budgets.workspace_day - spend.workspace_day - spend.held_workspace_day, spend.held_workspace_day))
    if budgets.workspace_month:
        rooms.append(_MoneyRoom("month", budgets.workspace_month,
                                budgets.workspace_month - spend.workspace_month - spend.held_workspace_month,
                                spend.held_workspace_month))
    return rooms


def _money_short(room: _MoneyRoom, need: float, now: datetime) -> Refused | None:
    """Why a request that would cost need USD does not fit under a budget: the budget is too small, or used up."""
    if room.left >= need:
        return None
    what = {"user": "your daily budget of {} in this workspace", "workspace": "this workspace's daily budget of {}",
            "month": "this workspace's monthly budget of {}"}[room.scope].format(usd(room.budget))
    if room.scope == "month":
        then = next_month(now)
        reset = f"It resets on {then.day} {then:%B} at 00:00 UTC (in {_until(now, then)})."
    else:
        reset = f"It resets at midnight UTC (in {_until(now, next_midnight(now))})."
    if room.budget < need:
        return Refused(f"This conversation would cost about {usd(need)} for even a short answer, more than {what}. "
                       "A new thread (or `/chatbot forget`) costs less; an admin can also raise the budget.",
                       limit=f"money:{room.scope}:too-small")
    held = " (counting answers still being written)" if room.held else ""
    whose = "You've" if room.scope == "user" else "This workspace has"
    return Refused(f"{whose} used {what}{held}. {reset}", limit=f"money:{room.scope}")


def _cost_of(prices: PriceList, model: str, prompt: int, output: int) -> tuple[float, float]:
    """(USD of the prompt, USD per output token) at this model's price."""
    price = prices.price(model)
    if price is None:
        return 0.0, 0.0
    return prompt * price.input_per_million / 1_000_000, price.output_per_million / 1_000_000


def _fit_money(
    rooms: list[_MoneyRoom], prices: PriceList, model: str, prompt: int, limit: int | None, now: datetime
) -> tuple[int | None, float]:
    """The output limit shrunk to what the budgets leave, and the USD to hold; raises Refused when none is left."""
    if not rooms:
        return limit, 0.0
    prompt_cost, per_token = _cost_of(prices, model, prompt, 0)
    for room in rooms:
        if refusal := _money_short(room, prompt_cost + MIN_ANSWER_TOKENS * per_token, now):
            raise refusal
        if per_token:
            affordable = int((room.left - prompt_cost) / per_token)
            limit = affordable if limit is None else min(limit, affordable)
    return limit, prompt_cost + (limit or 0) * per_token


def _until(now: datetime, then: datetime) -> str:
    minutes = max(1, int((then - now).total_seconds() + 59) // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(frozen=True, slots=True)
class _Room:
    scope: str
    """'user' or 'workspace'."""
    cap: int
    left: int
    """What the cap leaves after today's usage and the reservations of answers in progress (may be negative)."""
    held: int
    """Of what is used, the part reserved by answers still being written."""


def _rooms_of(caps: Caps, snapshot: UsageSnapshot) -> list[_Room]:
    rooms = []
    if caps.user_daily:
        held = snapshot.user_held
        rooms.append(_Room("user", caps.user_daily, caps.user_daily - snapshot.user_used - held, held))
    if caps.workspace_daily:
        held = snapshot.workspace_held
        rooms.append(_Room("workspace", caps.workspace_daily, caps.workspace_daily - snapshot.workspace_used - held, held))
    return rooms


def _rate_refusal_in(recent: Sequence[datetime], caps: Caps, now: datetime) -> Refused | None:
    """Refused when the request times within the last minute (oldest first) already reach the rate cap."""
    if caps.per_minute and len(recent) >= caps.per_minute:
        wait = int((recent[-caps.per_minute] + _MINUTE - now).total_seconds()) + 1
        return Refused(
            f"You're sending requests faster than allowed here ({caps.per_minute} per minute). Try again in {wait} s.",
            allowance=False, limit="rate",
        )
    return None


class UsageLimits:
    def __init__(self, store: Store, clock: Clock, answer_lease: float = 0.0, prices: PriceList | None = None) -> None:
        self.store = store
        self.clock = clock
        self.prices = prices or PriceList()
        self._spent: dict[tuple[int, str], dict[tuple[str, str], float]] = {}
        """USD per (day, user), per (workspace, month); loaded once a month per workspace, then kept current."""
        self._held_cost: dict[tuple[int, str, str], float] = {}
        """USD held by answers in progress, per (workspace, day, user)."""
        self.lease = max(RESERVATION_LEASE, timedelta(seconds=answer_lease))
        """How long a reservation in a shared database counts without being settled."""
        self._used: dict[tuple[int, str], dict[str, int]] = {}
        """Tokens per user, per (workspace, day); only today's days are kept."""
        self._reserved: dict[tuple[int, str, str], int] = {}
        """Tokens held by answers in progress, per (workspace, day, user); released when each answer ends."""
        self._recent: dict[tuple[int, str], deque[datetime]] = {}
        """Request times within the last minute, per (workspace, user); idle entries are swept once a minute."""
        self._swept = datetime.min.replace(tzinfo=timezone.utc)

    async def used_today(self, workspace_id: int, day: str) -> dict[str, int]:
        """Tokens per user on a day in a workspace (loaded once a day, then kept current)."""
        found = self._used.get((workspace_id, day))
        if found is None:
            loaded = await self.store.day_usage(workspace_id, day)
            for key in [key for key in self._used if key[1] < day]:
                del self._used[key]  # a new day has begun; only answers that began yesterday still settle there
            if len(self._used) > MAX_TRACKED_DAYS:
                self._used.clear()  # very many busy workspaces: the store holds every total anyway
            found = self._used.setdefault((workspace_id, day), loaded)  # a concurrent load may have won: keep that one
        return found

    async def spent_this_month(self, workspace_id: int, month: str) -> dict[tuple[str, str], float]:
        """USD per (day, user) this month in a workspace (loaded once a month, then kept current)."""
        found = self._spent.get((workspace_id, month))
        if found is None:
            loaded: dict[tuple[str, str], float] = {}
            for user, day, model, prompt, completion in await self.store.month_usage(workspace_id, f"{month}-01"):
                loaded[(day, user)] = loaded.get((day, user), 0.0) + self.prices.cost(model, prompt, completion)
            for key in [key for key in self._spent if key[1] < month]:
                del self._spent[key]
            if len(self._spent) > MAX_TRACKED_DAYS:
                self._spent.clear()
            found = self._spent.setdefault((workspace_id, month), loaded)
        return found

    def _spend(self, workspace_id: int, user_id: str, day: str, spent: dict[tuple[str, str], float]) -> Spend:
        """What the budgets see in memory (one process owns the database)."""
        month = month_of(day)
        held_user = held_day = held_month = 0.0
        for (ws, on, user), cost in self._held_cost.items():
            if ws == workspace_id and month_of(on) == month:
                held_month += cost
                held_day += cost if on == day else 0.0
                held_user += cost if on == day and user == user_id else 0.0
        return Spend(
            spent.get((day, user_id), 0.0), sum(c for (on, _), c in spent.items() if on == day), sum(spent.values()),
            held_user, held_day, held_month,
        )

    def _rate_refusal(self, workspace_id: int, user_id: str, caps: Caps, now: datetime) -> Refused | None:
        self._sweep(now)
        recent = self._recent.get((workspace_id, user_id))
        if recent is None:
            return None
        while recent and now - recent[0] >= _MINUTE:
            recent.popleft()
        return _rate_refusal_in(recent, caps, now)

    def _sweep(self, now: datetime) -> None:
        """Drop the request times of people idle for a minute, so many people over time cost no memory."""
        if now - self._swept < _MINUTE:
            return
        self._swept = now
        self._recent = {key: times for key, times in self._recent.items() if times and now - times[-1] < _MINUTE}

    def _rooms(self, workspace_id: int, user_id: str, caps: Caps, day: str, used: dict[str, int]) -> list[_Room]:
        user_held = self._reserved.get((workspace_id, day, user_id), 0) if caps.user_daily else 0
        workspace_held = sum(
            tokens for (ws, held_day, _), tokens in self._reserved.items() if ws == workspace_id and held_day == day
        ) if caps.workspace_daily else 0
        snapshot = UsageSnapshot(used.get(user_id, 0), sum(used.values()), user_held, workspace_held, [])
        return _rooms_of(caps, snapshot)

    def _short(self, room: _Room, need: int, now: datetime) -> Refused | None:
        """Why a request needing this many tokens does not fit under a cap: the cap is too small, or used up."""
        if room.cap < need:
            whose = "per person here" if room.scope == "user" else "for this whole workspace"
            return Refused(
                f"This conversation needs about {need:,} tokens for even a short answer, more than the daily "
                f"allowance of {room.cap:,} tokens {whose}. A new thread (or `/chatbot forget`) needs fewer; "
                "an admin can also raise the allowance.", limit=f"tokens:{room.scope}:too-small",
            )
        if room.left >= need:
            return None
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        reset = f"It resets at midnight UTC (in {_until(now, midnight)})."
        left = (
            f": {room.left:,} left, too few for this request (about {need:,} tokens with a short answer)"
            if room.left > 0 else ""
        )
        held = " (counting answers still being written)" if room.held else ""
        if room.scope == "user":
            return Refused(f"You've used your daily allowance of {room.cap:,} tokens in this workspace{left}{held}. {reset}",
                           limit="tokens:user")
        return Refused(f"This workspace has used its daily allowance of {room.cap:,} tokens{left}{held}. {reset}",
                       limit="tokens:workspace")

    async def _snapshot(
        self, workspace_id: int, user_id: str, caps: Caps, now: datetime, budgets: Budgets = Budgets()
    ) -> UsageSnapshot:
        """What every replica has used and reserved (shared database only); no lock: a read to refuse early."""
        minute_ago = iso(now - _MINUTE) if caps.per_minute else None
        month_start = first_of_month(now.date()).isoformat() if budgets.any else None
        return await self.store.usage_snapshot(
            workspace_id, user_id, now.date().isoformat(), iso(now - self.lease), minute_ago, month_start
        )

    def _shared_spend(self, user_id: str, day: str, snapshot: UsageSnapshot) -> Spend:
        return spend_of(user_id, day, snapshot.spent, snapshot.held_cost, self.prices)

    def _refusal(self, caps: Caps, snapshot: UsageSnapshot, need: int, now: datetime) -> Refused | None:
        """Why a request needing this many tokens is refused now, from a shared snapshot; None when it may go on."""
        refusal = _rate_refusal_in([datetime.fromisoformat(at) for at in snapshot.recent], caps, now)
        for room in _rooms_of(caps, snapshot):
            refusal = refusal or self._short(room, need, now)
        return refusal

    async def precheck(self, workspace_id: int, user_id: str, caps: Caps, budgets: Budgets = Budgets()) -> None:
        """Refuse early, before any moderation or model call, when the rate is reached or no daily room or budget
        is left."""
        now = self.clock()
        day = now.date().isoformat()
        if self.store.shared:
            if caps.daily or caps.per_minute or budgets.any:
                snapshot = await self._snapshot(workspace_id, user_id, caps, now, budgets)
                refusal = self._refusal(caps, snapshot, MIN_ANSWER_TOKENS, now)
                for money in _money_rooms(budgets, self._shared_spend(user_id, day, snapshot)):
                    if refusal is None and money.left <= 0:
                        refusal = _money_short(money, _SPENT, now)
                if refusal is not None:
                    raise refusal
            return
        refusal = self._rate_refusal(workspace_id, user_id, caps, now)
        if refusal is not None:
            raise refusal
        if caps.daily:
            used = await self.used_today(workspace_id, day)
            for room in self._rooms(workspace_id, user_id, caps, day, used):
                if refusal := self._short(room, MIN_ANSWER_TOKENS, now):
                    raise refusal
        if budgets.any:
            spend = self._spend(workspace_id, user_id, day, await self.spent_this_month(workspace_id, month_of(day)))
            for money in _money_rooms(budgets, spend):
                if money.left <= 0 and (refusal := _money_short(money, _SPENT, now)):
                    raise refusal

    async def room(self, workspace_id: int, user_id: str, caps: Caps) -> int | None:
        """Tokens a request may still spend under the tightest daily cap, reservations included (None: no daily cap)."""
        if not caps.daily:
            return None
        now = self.clock()
        if self.store.shared:
            rooms = _rooms_of(caps, await self._snapshot(workspace_id, user_id, replace(caps, per_minute=0), now))
        else:
            day = now.date().isoformat()
            rooms = self._rooms(workspace_id, user_id, caps, day, await self.used_today(workspace_id, day))
        return max(0, min(room.left for room in rooms))

    async def spend(self, workspace_id: int, user_id: str) -> Spend:
        """USD spent and held today and this month, for `budget` and alerts."""
        now = self.clock()
        day = now.date().isoformat()
        if self.store.shared:
            snapshot = await self._snapshot(workspace_id, user_id, Caps(), now, Budgets(workspace_month=1.0))
            return self._shared_spend(user_id, day, snapshot)
        return self._spend(workspace_id, user_id, day, await self.spent_this_month(workspace_id, month_of(day)))

    async def admit(
        self, workspace_id: int, user_id: str, caps: Caps, prompt: int, output: int | None,
        budgets: Budgets = Budgets(), model: str = "",
    ) -> Admission:
        """Reserve this request's prompt and output limit, shrinking the limit to what the caps and budgets leave,
        or raise Refused.

        prompt must be an upper bound of what the server will count; output is the limit wanted (None: none);
        model prices the request for the budgets."""
        now = self.clock()
        if self.store.shared:
            return await self._admit_shared(workspace_id, user_id, caps, prompt, output, now, budgets, model)
        day = now.date().isoformat()
        used = await self.used_today(workspace_id, day) if caps.daily else {}
        spent = await self.spent_this_month(workspace_id, month_of(day)) if budgets.any else {}
        # From here to the reservation nothing awaits, so concurrent requests are admitted one after another.
        refusal = self._rate_refusal(workspace_id, user_id, caps, now)
        if refusal is not None:
            raise refusal
        limit = output
        need = prompt + MIN_ANSWER_TOKENS
        for room in self._rooms(workspace_id, user_id, caps, day, used):
            if refusal := self._short(room, need, now):
                raise refusal
            limit = room.left - prompt if limit is None else min(limit, room.left - prompt)
        money = _money_rooms(budgets, self._spend(workspace_id, user_id, day, spent)) if budgets.any else []
        limit, cost = _fit_money(money, self.prices, model, prompt, limit, now)
        if caps.per_minute:
            self._recent.setdefault((workspace_id, user_id), deque()).append(now)
        reserved = prompt + (limit or 0)
        slot = (workspace_id, day, user_id)
        self._reserved[slot] = self._reserved.get(slot, 0) + reserved
        if cost:
            self._held_cost[slot] = self._held_cost.get(slot, 0.0) + cost
        return Admission(workspace_id, user_id, day, reserved, limit, cost=cost)

    async def _admit_shared(
        self, workspace_id: int, user_id: str, caps: Caps, prompt: int, output: int | None, now: datetime,
        budgets: Budgets = Budgets(), model: str = "",
    ) -> Admission:
        day = now.date().isoformat()
        if not (caps.daily or caps.per_minute or budgets.any):
            return Admission(workspace_id, user_id, day, 0, output)  # nothing to share: no round trip
        limit = [output]

        def decide(snapshot: UsageSnapshot) -> tuple[int, float]:
            """Runs inside the admission's transaction, under the workspace's lock: raise to refuse."""
            need = prompt + MIN_ANSWER_TOKENS
            if refusal := _rate_refusal_in([datetime.fromisoformat(at) for at in snapshot.recent], caps, now):
                raise refusal
            for room in _rooms_of(caps, snapshot):
                if refusal := self._short(room, need, now):
                    raise refusal
                limit[0] = room.left - prompt if limit[0] is None else min(limit[0], room.left - prompt)
            money = _money_rooms(budgets, self._shared_spend(user_id, day, snapshot)) if budgets.any else []
            limit[0], cost = _fit_money(money, self.prices, model, prompt, limit[0], now)
            return prompt + (limit[0] or 0), cost

        minute_ago = iso(now - _MINUTE) if caps.per_minute else None
        month_start = first_of_month(now.date()).isoformat() if budgets.any else None
        reservation = await self.store.reserve_usage(
            workspace_id, user_id, day, iso(now - self.lease), minute_ago, decide, month_start
        )
        return Admission(workspace_id, user_id, day, prompt + (limit[0] or 0), limit[0], reservation)

    def usage_record(self, admission: Admission, model: str, usage: Usage) -> UsageRecord | None:
        """What settle would write for this answer, for a shared store to write with the answer itself (saving a
        round trip; settle(written=True) then writes nothing). None on SQLite, whose caps count in memory from
        totals read once a day: those must be read before this answer's usage is written."""
        if not self.store.shared:
            return None
        return UsageRecord(admission.workspace_id, admission.user_id, admission.day, model,
                           usage.prompt_tokens, usage.completion_tokens, admission.reservation)

    async def settle(self, admission: Admission, model: str, usage: Usage | None, written: bool = False) -> None:
        """Release the reservation and count what the reply really used (nothing, if it failed before usage).

        written: the store already wrote usage_record's rows with the answer (shared stores only)."""
        if self.store.shared:
            if written:
                return
            counted = None if usage is None else (usage.prompt_tokens, usage.completion_tokens)
            if admission.reservation is not None:
                await self.store.settle_reservation(
                    admission.reservation, admission.workspace_id, admission.user_id, admission.day, model, counted
                )
            elif counted is not None:
                await self.store.record_usage(admission.workspace_id, admission.user_id, admission.day, model, *counted)
            return
        slot = (admission.workspace_id, admission.day, admission.user_id)
        used = await self.used_today(admission.workspace_id, admission.day) if usage is not None else None
        spent = await self.spent_this_month(admission.workspace_id, month_of(admission.day)) if usage is not None else None
        left = self._reserved.get(slot, 0) - admission.reserved
        if left > 0:
            self._reserved[slot] = left
        else:
            self._reserved.pop(slot, None)
        held = self._held_cost.get(slot, 0.0) - admission.cost
        if held > 1e-12:
            self._held_cost[slot] = held
        else:
            self._held_cost.pop(slot, None)
        if usage is None or used is None or spent is None:
            return
        used[admission.user_id] = used.get(admission.user_id, 0) + usage.total  # counted before the write can fail
        cost = self.prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
        spent[(admission.day, admission.user_id)] = spent.get((admission.day, admission.user_id), 0.0) + cost
        await self.store.record_usage(
            admission.workspace_id, admission.user_id, admission.day, model, usage.prompt_tokens, usage.completion_tokens
        )

    async def remaining(self, workspace_id: int, user_id: str, caps: Caps) -> int | None:
        """Tokens this user may still use today (None when no daily cap applies)."""
        return await self.room(workspace_id, user_id, caps)
