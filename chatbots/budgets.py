"""Money budgets: USD a workspace may spend per calendar month and per day (UTC), and each person per day.

Spend is the estimate the bot makes from prices (list prices or CHATBOTS_PRICES): settled answers at what they
used, answers in progress at what they reserved (prompt and output limit). Models without a price cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from .pricing import PriceList

MAX_BUDGET = 1_000_000.0
"""Largest budget a command accepts, in USD."""
_AMOUNT = re.compile(r"[0-9]{1,7}(?:\.[0-9]{1,6})?")

SETTINGS = {"workspace_month": "budget_workspace_month", "workspace_day": "budget_workspace_day", "user_day": "budget_user_day"}
"""Each budget's stored setting."""


def parse_amount(text: str | None) -> float | None:
    """A USD amount like 25 or 12.50 (ASCII digits, at most MAX_BUDGET); None otherwise. Bounded before parsing."""
    if text is None or len(text) > 16 or not _AMOUNT.fullmatch(text):
        return None
    value = float(text)
    return value if value <= MAX_BUDGET else None


def usd(amount: float) -> str:
    """Dollars for people: cents, or more digits for amounts under a cent."""
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


@dataclass(frozen=True, slots=True)
class Budgets:
    workspace_month: float = 0.0
    workspace_day: float = 0.0
    user_day: float = 0.0
    """USD; 0 means no budget, for each."""

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Budgets:
        def amount(name: str) -> float:
            return parse_amount(settings.get(SETTINGS[name])) or 0.0  # commands stored it; only garbage reads as none

        return cls(amount("workspace_month"), amount("workspace_day"), amount("user_day"))

    @property
    def any(self) -> bool:
        return bool(self.workspace_month or self.workspace_day or self.user_day)

    def doubled(self) -> Budgets:
        """What the fallback model may spend up to: twice each allowance."""
        return Budgets(self.workspace_month * 2, self.workspace_day * 2, self.user_day * 2)


@dataclass(frozen=True, slots=True)
class Spend:
    """USD spent by settled answers, and held by answers still being written, as the budgets see it."""

    user_day: float = 0.0
    workspace_day: float = 0.0
    workspace_month: float = 0.0
    held_user_day: float = 0.0
    held_workspace_day: float = 0.0
    held_workspace_month: float = 0.0


def spend_of(
    user_id: str, day: str, used: Iterable[tuple[str, str, str, int, int]], held: Iterable[tuple[str, str, float]],
    prices: PriceList,
) -> Spend:
    """Spend from this month's usage rows (user, day, model, prompt, completion) and reservations (user, day, USD)."""
    user_day = workspace_day = workspace_month = 0.0
    for user, on, model, prompt, completion in used:
        cost = prices.cost(model, prompt, completion)
        workspace_month += cost
        if on == day:
            workspace_day += cost
            if user == user_id:
                user_day += cost
    held_user = held_day = held_month = 0.0
    for user, on, cost in held:
        held_month += cost
        if on == day:
            held_day += cost
            if user == user_id:
                held_user += cost
    return Spend(user_day, workspace_day, workspace_month, held_user, held_day, held_month)


def month_of(day: str) -> str:
    """'2026-12' for '2026-12-04'."""
    return day[:7]


def first_of_month(moment: date) -> date:
    return moment.replace(day=1)


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time.min, timezone.utc)


def next_month(now: datetime) -> datetime:
    first = first_of_month(now.date())
    following = (first + timedelta(days=32)).replace(day=1)
    return datetime.combine(following, time.min, timezone.utc)
