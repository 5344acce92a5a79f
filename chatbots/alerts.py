"""Budget alerts: admins are told in the channel they chose when the workspace reaches 50 %, 80 % and 100 % of a
workspace budget or token cap in the current period, once per threshold and period across every replica (each
alert claims a unique key in the database before it is posted)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .budgets import Budgets, month_of, usd
from .limits import Caps, UsageLimits
from .lru import LRU
from .store import Store
from .types import ConversationKey

log = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)
CLAIMS_KEPT = 10_000
EXHAUSTED = {"tokens:workspace": "tokens", "money:workspace": "day", "money:month": "month"}
"""The workspace limits a refusal can name (Refused.limit), as the measures below call them."""
Notify = Callable[[str, str, str], Awaitable[None]]
"""Post text in a channel: (workspace, channel, text), as a platform names them."""


class Alerts:
    def __init__(self, store: Store, limits: UsageLimits, notifiers: dict[str, Notify]) -> None:
        self.store = store
        self.limits = limits
        self.notifiers = notifiers
        self._claimed: LRU[tuple[int, str], bool] = LRU(CLAIMS_KEPT)
        """Alerts already claimed (here or by another replica): every later answer in the period skips the write."""

    async def check(
        self, key: ConversationKey, workspace_id: int, found: dict[str, str], caps: Caps, budgets: Budgets,
        exhausted: str = "",
    ) -> None:
        """After an answer is counted, or a request refused: post what thresholds the workspace newly reached.
        exhausted: the limit a refusal named (Refused.limit), which is then at 100 %. Failures are only logged."""
        channel = found.get("alerts_channel")
        notify = self.notifiers.get(key.platform)
        if not channel or notify is None or not (caps.workspace_daily or budgets.workspace_day or budgets.workspace_month):
            return
        try:
            for text in await self._reached(workspace_id, caps, budgets, EXHAUSTED.get(exhausted, "")):
                await notify(key.workspace, channel, text)
        except Exception as error:  # noqa: BLE001 - an alert must never cost the answer
            log.warning("could not post a budget alert: %s", type(error).__name__)

    async def _reached(self, workspace_id: int, caps: Caps, budgets: Budgets, exhausted: str) -> list[str]:
        today = self.store.clock().date().isoformat()
        measures: list[tuple[str, str, float, float, str]] = []  # (kind, period, used, limit, how to show)
        if caps.workspace_daily:
            tokens = sum((await self.store.day_usage(workspace_id, today)).values())
            measures.append(("tokens", today, tokens, caps.workspace_daily,
                             f"{tokens:,} of its daily cap of {caps.workspace_daily:,} tokens; it resets at midnight UTC"))
        if budgets.workspace_day or budgets.workspace_month:
            spend = await self.limits.spend(workspace_id, "")
            if budgets.workspace_day:
                measures.append(("day", today, spend.workspace_day, budgets.workspace_day,
                                 f"{usd(spend.workspace_day)} of its daily budget of {usd(budgets.workspace_day)}; "
                                 "it resets at midnight UTC"))
            if budgets.workspace_month:
                measures.append(("month", month_of(today), spend.workspace_month, budgets.workspace_month,
                                 f"{usd(spend.workspace_month)} of its monthly budget of {usd(budgets.workspace_month)}; "
                                 "it resets on the 1st at 00:00 UTC"))
        texts = []
        for kind, period, used, limit, shown in measures:
            if kind == exhausted:  # refused: what is left is too little for any answer, whatever the sum says
                used, shown = max(used, limit), shown + "; what is left is too little for another answer"
            newly = [pct for pct in THRESHOLDS if used >= limit * pct / 100
                     and await self._claim(workspace_id, f"alert:{kind}:{period}:{pct}")]
            if newly:
                texts.append(f"Heads-up: this workspace has reached {max(newly)} % ({shown}).")
        return texts

    async def _claim(self, workspace_id: int, key: str) -> bool:
        """Whether this process is the first anywhere to send this alert."""
        if self._claimed.get((workspace_id, key)):
            return False
        claimed = await self.store.claim_notice(workspace_id, key)
        self._claimed.put((workspace_id, key), True)
        return claimed
