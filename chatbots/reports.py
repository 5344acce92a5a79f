"""Operator reports printed by the CLI: usage and cost, the audit log, down-voted answers."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any, TextIO

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


def usage_report(store: SQLDatabase, prices: PriceList, days: int, workspace: tuple[str, str] | None, as_csv: bool) -> str:
    since = (store.clock().date() - timedelta(days=days - 1)).isoformat()
    rows = queries.usage_rows(store, since, workspace)
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
        return f"No usage in the last {days} days."
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    cost = sum(float(row[-1]) for row in table)
    return _table(headers, table) + f"\n\nTotal: {tokens:,} tokens, ~${cost:,.2f} over {days} days."


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
