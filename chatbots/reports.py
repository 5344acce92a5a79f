"""Operator reports printed by the CLI: usage and cost, the audit log, down-voted answers."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, TextIO

from .budgets import next_month, parse_amount
from .pricing import PriceList
from .store import SQLDatabase
from .store import reports as queries


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def installations_report(store: SQLDatabase) -> str:
    """`chatbots installations`: where the Slack app is installed (OAuth mode), by whom and when; never tokens."""
    from .store import installations

    found = installations.listing(store)
    if not found:
        return "No Slack installations yet (OAuth mode: people install the app at /slack/install)."
    rows = [[("(org-wide)" if app.is_enterprise_install else app.team_id), app.team_name or "-",
             app.enterprise_id or "-", app.enterprise_name or "-", app.bot_user_id or "-", app.installer_id or "-",
             app.installed_at[:16].replace("T", " ")] for app in found]
    return _table(["workspace", "name", "org", "org name", "bot user", "installed by", "installed (UTC)"], rows)


def workspace_filter(store: SQLDatabase, text: str | None) -> tuple[str, str] | None:
    """"slack:T123" or a bare id ("T123", looked up on every platform) -> (platform, id)."""
    if not text:
        return None
    platform, _, external = text.partition(":")
    if external:
        return platform, external
    return queries.workspace_platform(store, text) or "?", text


def usage_report(
    store: SQLDatabase, prices: PriceList, days: int, workspace: tuple[str, str] | None, as_csv: bool,
    month: str | None = None,
) -> str:
    """Usage and estimated cost per day, workspace, user and model; then (as a table) cost per model per day, per
    channel, and each workspace's budgets in %. month ('2026-12'): that calendar month instead of the last days."""
    today = store.clock().date()
    since = f"{month}-01" if month else (today - timedelta(days=days - 1)).isoformat()
    until = next_month(datetime.combine(date.fromisoformat(since), time.min, timezone.utc)).date().isoformat() if month else None
    period = f"in {month}" if month else f"over {days} days"
    rows = [r for r in queries.usage_rows(store, since, workspace) if until is None or r["day"] < until]
    headers = ["day", "platform", "workspace", "user", "model", "prompt_tokens", "completion_tokens", "replies", "cost_usd"]
    table = [
        [r["day"], r["platform"], r["workspace"], r["user_id"], r["model"], r["prompt_tokens"], r["completion_tokens"],
         r["replies"], f"{prices.cost(r['model'], r['prompt_tokens'], r['completion_tokens']):.4f}"]
        for r in rows
    ]
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(table)
        return out.getvalue().rstrip("\n")
    if not table:
        return f"No usage in {month}." if month else f"No usage in the last {days} days."
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    cost = sum(float(row[-1]) for row in table)
    return "\n\n".join([
        _table(headers, table), f"Total: {tokens:,} tokens, ~${cost:,.2f} {period}.",
        "Cost per model per day:\n" + _per_model_day(rows, prices),
        "Cost per channel (answers still stored):\n" + _per_channel(store, prices, since, until, workspace),
        *_budget_use(store, prices, workspace, today),
    ])


def _per_model_day(rows: list[dict[str, Any]], prices: PriceList) -> str:
    totals: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        entry = totals.setdefault((r["day"], r["model"]), [0, 0.0])
        entry[0] += r["prompt_tokens"] + r["completion_tokens"]
        entry[1] += prices.cost(r["model"], r["prompt_tokens"], r["completion_tokens"])
    return _table(["day", "model", "tokens", "cost_usd"],
                  [[day, model, f"{int(t):,}", f"{c:.4f}"] for (day, model), (t, c) in sorted(totals.items())])


def _per_channel(store: SQLDatabase, prices: PriceList, since: str, until: str | None, workspace: tuple[str, str] | None) -> str:
    rows = queries.channel_usage(store, since + "T00:00:00", until + "T00:00:00" if until else None, workspace)
    totals: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        entry = totals.setdefault((r["platform"], r["workspace"], r["channel"]), [0, 0.0])
        entry[0] += r["replies"]
        entry[1] += prices.cost(r["model"] or "", int(r["prompt_tokens"] or 0), int(r["completion_tokens"] or 0))
    if not totals:
        return "(none)"
    return _table(["platform", "workspace", "channel", "replies", "cost_usd"],
                  [[p, w, c, int(n), f"{cost:.4f}"] for (p, w, c), (n, cost) in sorted(totals.items())])


def _budget_use(store: SQLDatabase, prices: PriceList, workspace: tuple[str, str] | None, today: date) -> list[str]:
    """Each workspace's monthly and daily budget, with this month's and today's spend in %."""
    budgets: dict[tuple[str, str], dict[str, float]] = {}
    for r in queries.workspace_budgets(store, workspace):
        amount = parse_amount(r["value"])
        if amount:
            budgets.setdefault((r["platform"], r["workspace"]), {})[r["name"]] = amount
    if not budgets:
        return []
    first = today.replace(day=1).isoformat()
    spent: dict[tuple[str, str], list[float]] = {}
    for r in queries.usage_rows(store, first, workspace):
        entry = spent.setdefault((r["platform"], r["workspace"]), [0.0, 0.0])
        cost = prices.cost(r["model"], r["prompt_tokens"], r["completion_tokens"])
        entry[0] += cost
        entry[1] += cost if r["day"] == today.isoformat() else 0.0
    table = []
    for (platform, external), named in sorted(budgets.items()):
        month_spend, day_spend = spent.get((platform, external), [0.0, 0.0])
        for name, used, label in (("budget_workspace_month", month_spend, "this month"),
                                  ("budget_workspace_day", day_spend, "today")):
            if name in named:
                table.append([platform, external, label, f"{used:.2f}", f"{named[name]:.2f}",
                              f"{used * 100 / named[name]:.0f} %"])
    return ["Budget use:\n" + _table(["platform", "workspace", "period", "spent_usd", "budget_usd", "used"], table)]


def audit_report(store: SQLDatabase, workspace: tuple[str, str] | None) -> str:
    rows = queries.audit_log(store, workspace)
    if not rows:
        return "No settings changes recorded."
    return _table(
        ["when", "platform", "workspace", "channel", "who", "setting", "old", "new"],
        [[r["at"][:19], r["platform"], r["workspace"], r["channel"] or "-", r["actor_id"], r["setting"],
          _short(r["old_value"]), _short(r["new_value"])] for r in rows],
    )


def feedback_report(store: SQLDatabase, days: int) -> str:
    since = (store.clock() - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    rows = queries.downvoted(store, since)
    if not rows:
        return f"No down-voted answers in the last {days} days."
    blocks = []
    for r in rows:
        blocks.append(
            f"{r['answered_at'][:19]}  {r['platform']}:{r['workspace']}  #{r['channel']}  👎 {r['down']}  👍 {r['up']}\n"
            f"  asked:    {_short(r['question'], 300)}\n  answered: {_short(r['answer'], 300)}"
        )
    return "\n\n".join(blocks)


def moderation_report(store: SQLDatabase, days: int, flagged_only: bool) -> str:
    since = (store.clock() - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    rows = queries.moderation_log(store, since, flagged_only)
    if not rows:
        return f"No moderation decisions in the last {days} days."
    return _table(
        ["when", "platform", "workspace", "channel", "direction", "decision", "categories", "text"],
        [[r["at"][:19], r["platform"], r["workspace"], r["channel"] or "-", r["direction"], r["decision"],
          r["categories"] or "-", _short(r["text"], 60)] for r in rows],
    )


def export_workspace(store: SQLDatabase, workspace: tuple[str, str], out: TextIO) -> int:
    """A workspace's conversations as JSON lines, one message a line; returns how many were written."""
    platform, external = workspace
    written = 0
    for row in queries.workspace_messages(store, platform, external):
        out.write(json.dumps({"platform": platform, "workspace": external, **row}, ensure_ascii=False) + "\n")
        written += 1
    return written


def _short(value: str | None, limit: int = 40) -> str:
    if value is None:
        return "-"
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
