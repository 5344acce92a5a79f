"""Operating the bot: /metrics, structured logs with a correlation id per turn, and workspace export."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from chatbots.cli import main
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.logs import JsonFormatter, _TurnFilter
from chatbots.types import ConversationKey, Inbound
from tests.backend import database_env
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.slack_rig import slack_rig

METRICS_TOKEN = "observability-metrics-token"


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in exposition text (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if all(f'{key}="{val}"' in head for key, val in labels.items()):
                return float(value)
    return 0.0


async def test_metrics_count_replies_errors_latency_tokens_moderation_and_refusals(settings: Config) -> None:
    async with slack_rig(replace(settings, moderation=True, metrics_token=METRICS_TOKEN)) as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.model.flag_words = {"forbidden-topic"}
        await rig.reply_in("C1", await rig.mention("hello"))
        for _ in range(3):
            rig.model.queue(status=503)
        await rig.reply_in("C1", await rig.mention("are you up?"))
        await rig.reply_in("C1", await rig.mention("forbidden-topic"))
        await rig.command("limit rate 1", user="UADMIN")
        await rig.reply_in("C1", await rig.mention("one"))
        await rig.reply_in("C1", await rig.mention("two"))
        await rig.wait_outcomes(6)  # five turns and the command, each fully handled
        async with aiohttp.ClientSession() as session:
            bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            async with session.get(f"http://127.0.0.1:{rig.bot.port}/metrics", headers=bearer) as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
    assert sample(text, "chatbots_turns_total", platform="slack", outcome="answered") == 2
    assert sample(text, "chatbots_turns_total", platform="slack", outcome="failed") == 1
    assert sample(text, "chatbots_turns_total", platform="slack", outcome="flagged") == 1
    assert sample(text, "chatbots_errors_total", kind="server_error") == 1
    assert sample(text, "chatbots_failures_total", source="model", kind="server_error") == 1
    assert sample(text, "chatbots_cap_refusals_total", platform="slack") == 1
    assert sample(text, "chatbots_time_to_first_token_seconds_count", platform="slack") == 2
    assert sample(text, "chatbots_reply_seconds_count", platform="slack") == 4
    assert sample(text, "chatbots_tokens_total", platform="slack", kind="completion") > 0
    assert sample(text, "chatbots_moderation_decisions_total", direction="in", decision="flagged") == 1
    assert sample(text, "chatbots_moderation_decisions_total", direction="out", decision="passed") >= 2
    assert sample(text, "chatbots_platform_events_total", platform="slack", outcome="turn") == 5


async def test_json_logs_carry_one_correlation_id_per_turn(engine: Engine, model_server: FakeModelServer) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_TurnFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger("chatbots").addHandler(handler)
    logging.getLogger("chatbots").setLevel(logging.DEBUG)
    try:
        model_server.queue(status=400)
        model_server.queue(status=401)  # two kinds of failure: a repeat of one would be counted, not logged
        turns = [engine.handle(Inbound(ConversationKey("t", "T", "C", str(n)), f"m{n}", "U", "A", "secret words"), RecordingReply())
                 for n in range(2)]
        await asyncio.gather(*turns)
    finally:
        logging.getLogger("chatbots").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failures = [line for line in lines if line["message"].startswith("model call failed")]
    assert len(failures) == 2 and all(line["level"] == "WARNING" for line in failures)
    ids = {line["turn"] for line in failures}
    assert len(ids) == 2 and "-" not in ids
    for turn in ids:  # each turn's own lines share its id, and the turn's outcome is logged with it
        assert any(line["turn"] == turn and line["message"] == "turn failed" for line in lines)
    assert "secret words" not in stream.getvalue()


def test_log_format_is_validated(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHATBOTS_LOG_FORMAT", "xml")
    assert main(["usage"]) == 2
    assert "CHATBOTS_LOG_FORMAT must be text or json" in capsys.readouterr().err


async def test_export_writes_a_workspaces_conversations_as_json_lines(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for workspace in ("T1", "T2"):
        await engine.handle(Inbound(ConversationKey("slack", workspace, "C1", "1.0"), "m1", "U1", "Ada", f"hi from {workspace}"), RecordingReply())
    database_env(monkeypatch, engine.config)
    out = tmp_path / "t1.jsonl"
    assert main(["export", "--workspace", "slack:T1", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["role"], r["text"]) for r in rows] == [("user", "hi from T1"), ("assistant", "echo: hi from T1")]
    assert rows[0]["workspace"] == "T1" and rows[0]["channel"] == "C1" and rows[0]["author_name"] == "Ada"
    assert "exported 2 messages" in capsys.readouterr().err


def test_histograms_are_cumulative_with_an_inf_bucket_equal_to_the_count() -> None:
    from chatbots.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.01, 0.3, 0.3, 200.0):
        metrics.reply_time.labels("slack").observe(seconds)
    text = metrics.exposition().decode()
    bucket = "chatbots_reply_seconds_bucket"
    assert sample(text, bucket, platform="slack", le="0.05") == 1
    assert sample(text, bucket, platform="slack", le="0.5") == 3
    assert sample(text, bucket, platform="slack", le="120.0") == 3
    assert sample(text, bucket, platform="slack", le="+Inf") == 4
    assert sample(text, "chatbots_reply_seconds_count", platform="slack") == 4
    assert "# TYPE chatbots_reply_seconds histogram" in text
    assert "_created" not in text, "no creation-time series"
