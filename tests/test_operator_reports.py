"""`chatbots usage`, `chatbots audit` and `chatbots feedback` read what the bot recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbots.cli import main
from chatbots.config import Config
from chatbots.store import open_database
from chatbots.types import ConversationKey
from tests.backend import database_env


@pytest.fixture
def db(settings: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The suite's database with a little of everything recorded, named in the environment the commands read."""
    database_env(monkeypatch, settings)
    monkeypatch.chdir(tmp_path)
    store = open_database(settings.database_url, settings.db_path)
    t1 = store.workspace_id("slack", "T1")
    t2 = store.workspace_id("discord", "G2")
    today = store.clock().date().isoformat()
    store.record_usage(t1, "U1", today, "gpt-4o-mini", 1_000_000, 500_000)
    store.record_usage(t2, "D9", today, "llama3", 10, 5)
    store.set_setting_audited(t1, "limit_user", "5000", actor_id="UADMIN")
    key = ConversationKey("slack", "T1", "C1", "1.0")
    conversation = store.conversation_id(key)
    store.add_message(conversation, "user", "what is the capital of France?", 9, author_id="U1")
    answer = store.add_message(conversation, "assistant", "Lyon.", 3)
    assert answer is not None
    store.record_reply_parts(t1, answer, ["2.0"])
    store.record_feedback(t1, "2.0", "U1", -1)
    store.close()
    return settings


def test_usage_prints_tokens_and_cost_per_workspace(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage"]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini  1000000        500000" in out and "0.4500" in out  # 1M x $0.15 + 0.5M x $0.60
    assert "llama3" in out and "Total: 1,500,015 tokens, ~$0.45 over 30 days." in out


def test_usage_csv_for_one_workspace(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--workspace", "T1", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("day,platform,workspace,user,model")
    assert len(lines) == 2 and ",slack,T1,U1,gpt-4o-mini,1000000,500000,1,0.4500" in lines[1]


def test_audit_lists_who_changed_what(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--workspace", "slack:T1"]) == 0
    out = capsys.readouterr().out
    assert "UADMIN" in out and "limit_user" in out and "5000" in out


def test_feedback_lists_down_voted_answers_with_their_question(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feedback", "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "asked:    what is the capital of France?" in out and "answered: Lyon." in out and "👎 1" in out


def test_days_must_be_positive(db: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--days", "0"]) == 2
    assert "--days must be at least 1" in capsys.readouterr().err


def test_prices_can_be_overridden_for_local_or_negotiated_models(
    db: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATBOTS_PRICES", "llama3=1000/2000;gpt-4o-mini=0/0")
    assert main(["usage", "--csv"]) == 0
    rows = {line.split(",")[4]: line.split(",")[-1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {"gpt-4o-mini": "0.0000", "llama3": "0.0200"}  # 10 x $1000/M + 5 x $2000/M


def test_a_malformed_price_list_is_one_clear_line(db: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHATBOTS_PRICES", "llama3=cheap")
    assert main(["usage"]) == 2
    assert "CHATBOTS_PRICES must look like" in capsys.readouterr().err
