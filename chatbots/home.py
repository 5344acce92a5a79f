"""What a person's home page for the bot shows: settings in force, their usage, and for admins the workspace's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .engine import Engine
from .limits import Caps
from .prompt import DEFAULT_INSTRUCTIONS
from .types import ConversationKey

DAYS = 30
TOP_USERS = 5


@dataclass(frozen=True, slots=True)
class WorkspaceUsage:
    """An admin's view: tokens per day (oldest first, DAYS of them), top users, and feedback votes."""

    days: list[tuple[str, int]]
    top_users: list[tuple[str, int]]
    thumbs_up: int
    thumbs_down: int


@dataclass(frozen=True, slots=True)
class HomeReport:
    instructions: str
    custom_instructions: bool
    model: str
    caps: Caps
    used_today: int
    remaining_today: int | None
    workspace: WorkspaceUsage | None
    """Only for admins."""


async def home_report(engine: Engine, platform: str, workspace: str, user_id: str, is_admin: bool) -> HomeReport:
    """Read from the store, fresh each time (the page refreshes when opened)."""
    store = engine.store
    key = ConversationKey(platform, workspace, "", "")
    settings = await store.settings_for(key)
    caps = await engine.caps(key)
    workspace_id = await store.workspace_id(platform, workspace)
    today = store.clock().date()
    since = today - timedelta(days=DAYS - 1)
    rows = await store.usage_rows(since.isoformat(), (platform, workspace))
    used = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows
               if r["user_id"] == user_id and r["day"] == today.isoformat())
    remaining = await engine.limits.remaining(workspace_id, user_id, caps)
    usage = None
    if is_admin:
        per_day = {(since + timedelta(days=n)).isoformat(): 0 for n in range(DAYS)}
        per_user: dict[str, int] = {}
        for r in rows:
            tokens = r["prompt_tokens"] + r["completion_tokens"]
            if r["day"] in per_day:
                per_day[r["day"]] += tokens
            per_user[r["user_id"]] = per_user.get(r["user_id"], 0) + tokens
        up, down = await store.feedback_totals(workspace_id, since.isoformat() + "T00:00:00")
        top = sorted(per_user.items(), key=lambda item: (-item[1], item[0]))[:TOP_USERS]
        usage = WorkspaceUsage(list(per_day.items()), top, up, down)
    return HomeReport(
        instructions=settings.get("instructions") or engine.config.default_instructions or DEFAULT_INSTRUCTIONS,
        custom_instructions=bool(settings.get("instructions")),
        model=settings.get("model") or engine.config.model,
        caps=caps,
        used_today=used,
        remaining_today=remaining,
        workspace=usage,
    )
