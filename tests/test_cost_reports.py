"""Prices (list and CHATBOTS_PRICES) and `chatbots usage`'s cost per model per day, per channel, budgets and --month."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from chatbots.cli import main
from chatbots.config import Config, ConfigError
from chatbots.pricing import LIST_PRICES, PriceList, parse_prices
from chatbots.store import open_database
from chatbots.types import ConversationKey
from tests.backend import database_env


def test_chatbots_prices_cover_any_model_with_input_cached_input_and_output() -> None:
    prices = PriceList(parse_prices("my-local=0.2/0.8; gpt-4o=2/1/8"))
    assert prices.cost("my-local", 1_000_000, 1_000_000) == pytest.approx(1.0)
    assert prices.price("gpt-4o") is not None and prices.price("gpt-4o").cached_input_per_million == 1  # type: ignore[union-attr]
    assert prices.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.0), "a dated name takes its family's price"
    assert prices.cost("llama3", 10**6, 10**6) == 0.0
    for bad in ["gpt-4o=2", "gpt-4o=1/2/3/4", "=1/2", "x=nan/1", "x=-1/2", "x=a/b"]:
        with pytest.raises(ConfigError, match="CHATBOTS_PRICES"):
            parse_prices(bad)


def test_the_list_prices_know_the_common_openai_models() -> None:
    prices = PriceList()
    for model in ["gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini"]:
        assert prices.price(model) is not None, model
    assert prices.price("gpt-5-mini") == LIST_PRICES["gpt-5-mini"] and prices.price("gpt-5.1") == LIST_PRICES["gpt-5"]


@pytest.fixture
def db(settings: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Two months of usage in one workspace, answers in two channels, and budgets, in the database the CLI reads."""
    database_env(monkeypatch, settings)
    monkeypatch.setenv("CHATBOTS_PRICES", "gpt-4o-mini=1/2")
    monkeypatch.chdir(tmp_path)
    today = datetime.now(timezone.utc).date()
    store = open_database(settings.database_url, settings.db_path)
    t1 = store.workspace_id("slack", "T1")
    store.record_usage(t1, "U1", today.isoformat(), "gpt-4o-mini", 1_000_000, 1_000_000)  # $3
    store.record_usage(t1, "U1", "2020-01-15", "gpt-4o-mini", 2_000_000, 0)  # $2, long ago
    store.set_setting_audited(t1, "budget_workspace_month", "12", actor_id="UADMIN")
    for channel, (prompt, completion) in [("C1", (500_000, 0)), ("C2", (0, 250_000))]:
        conversation = store.conversation_id(ConversationKey("slack", "T1", channel, channel))
        answer = store.begin_answer(conversation, "gpt-4o-mini")
        store.complete_answer(answer, "an answer", 2, status="ok", usage=(prompt, completion))
    store.close()
    return settings


def test_usage_shows_cost_per_model_per_day_per_channel_and_budget_use(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage"]) == 0
    out = capsys.readouterr().out
    today = datetime.now(timezone.utc).date().isoformat()
    assert f"{today}  gpt-4o-mini  2,000,000  3.0000" in out
    assert "slack     T1         C1       1        0.5000" in out and "slack     T1         C2       1        0.5000" in out
    assert "this month  3.00       12.00       25 %" in out
    assert "2020-01-15" not in out


def test_usage_for_a_calendar_month(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--month", "2020-01"]) == 0
    out = capsys.readouterr().out
    assert "2020-01-15" in out and "Total: 2,000,000 tokens, ~$2.00 in 2020-01." in out
    assert datetime.now(timezone.utc).date().isoformat() not in out
    assert main(["usage", "--month"]) == 0
    assert "~$3.00 in " + datetime.now(timezone.utc).strftime("%Y-%m") in capsys.readouterr().out
    assert main(["usage", "--month", "2020-13"]) != 0
    assert "--month must look like 2026-12" in capsys.readouterr().err
