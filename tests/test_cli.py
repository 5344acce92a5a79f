"""The `chatbots` command as a person uses it: real processes, the fake model on loopback."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from chatbots import console
from chatbots.cli import main
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.store import open_database
from tests.fakes.model_server import FakeModelServer


def _env(settings: Config, **extra: str) -> dict[str, str]:
    """The developer's environment without the bot's settings; the fake model and the suite's database instead."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_")) and k != "DATABASE_URL"}
    database = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    return {**env, "OPENAI_BASE_URL": settings.openai_base_url or "", "OPENAI_API_KEY": "sk-test",
            "CHATBOTS_DB": settings.db_path, **database, **extra}


async def _chatbots(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    return process.returncode or 0, out.decode(), err.decode()


async def test_piped_text_is_answered_and_remembered_in_the_next_run(model_server: FakeModelServer, settings: Config) -> None:
    env = _env(settings)
    code, out, err = await _chatbots("chat", env=env, stdin="what is 2+2?\n")
    assert (code, out.strip()) == (0, "echo: what is 2+2?"), err

    code, out, _ = await _chatbots("chat", "and 3+3?", env=env)
    assert code == 0 and out.strip() == "echo: and 3+3?"
    contents = [m["content"] for m in model_server.requests[-1]["messages"]]
    assert "what is 2+2?" in contents, "the second run continues the first conversation"


async def test_new_starts_over(engine: Engine, model_server: FakeModelServer) -> None:
    assert await console.chat(engine, new=False, prompt="first", stdin=io.StringIO(""), out=io.StringIO()) == 0
    assert await console.chat(engine, new=True, prompt="fresh start", stdin=io.StringIO(""), out=io.StringIO()) == 0
    contents = [m["content"] for m in model_server.requests[-1]["messages"]]
    assert "first" not in contents and contents[-1] == "fresh start"


async def test_piped_text_and_prompt_make_one_message(engine: Engine, model_server: FakeModelServer) -> None:
    out = io.StringIO()
    await console.chat(engine, new=True, prompt="summarise this", stdin=io.StringIO("a long report"), out=out)
    assert model_server.requests[-1]["messages"][-1]["content"] == "a long report\n\nsummarise this"
    assert out.getvalue() == "echo: a long report\n\nsummarise this\n"


async def test_system_option_saves_console_instructions(model_server: FakeModelServer, settings: Config) -> None:
    env = _env(settings)
    assert (await _chatbots("chat", "--system", "Reply in French.", "bonjour", env=env))[0] == 0
    assert (await _chatbots("chat", "encore", env=env))[0] == 0
    assert [r["messages"][0]["content"] for r in model_server.requests] == ["Reply in French.", "Reply in French."]


async def test_a_model_failure_prints_a_notice_and_exits_nonzero(model_server: FakeModelServer, settings: Config) -> None:
    model_server.queue(status=400)
    code, out, err = await _chatbots("chat", "hi", env=_env(settings))
    assert code == 1 and "rejected this request" in out and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHATBOTS_MAX_OUTPUT_TOKENS", "lots", "CHATBOTS_MAX_OUTPUT_TOKENS must be a number, got 'lots'"),
        ("CHATBOTS_CONTEXT_TOKENS", "10", "CHATBOTS_CONTEXT_TOKENS must be at least 256"),
        ("OPENAI_BASE_URL", "localhost:11434", "OPENAI_BASE_URL must start with http:// or https://"),
    ],
)
def test_bad_settings_are_one_clear_line(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv(variable, value)
    assert main(["chat", "hi"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert main(["chat", "hi"]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_run_without_any_platform_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DISCORD_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in err and "DISCORD_BOT_TOKEN" in err
    assert not list(tmp_path.iterdir()), "nothing is created before the configuration is known to be usable"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("chatbots ")


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment for the operator commands, with a database in tmp_path and no .env file."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATBOTS_DB", str(tmp_path / "bot.db"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("output", ["missing-folder/out.jsonl", "."])
def test_an_export_file_that_cannot_be_written_is_one_line(
    output: str, operator_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--workspace", "slack:T1", "--output", str(operator_env / output)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"chatbots: cannot write --output {operator_env / output}: ")


@pytest.mark.parametrize("command", ["usage", "feedback", "moderation-log", "purge"])
def test_days_past_a_century_are_one_line_not_a_date_overflow(
    command: str, operator_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--days", "99999999"]) == 2
    assert capsys.readouterr().err.strip() == "chatbots: --days must be at most 36500, got 99999999"


def test_a_retention_past_a_century_is_one_line_naming_the_variable(
    operator_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATBOTS_RETENTION_DAYS", "99999999")
    assert main(["purge"]) == 2
    assert capsys.readouterr().err.strip() == "chatbots: CHATBOTS_RETENTION_DAYS must be at most 36500, got 99999999"


async def test_a_report_whose_reader_went_away_ends_quietly(settings: Config, tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # like `chatbots usage | head -0`: the first write finds nobody reading
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatbots.cli", "usage", env=_env(settings), cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=writer, stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(writer)
    _, err = await process.communicate()
    assert process.returncode == 1 and not err.decode().strip(), err.decode()


@pytest.mark.sqlite_only  # CHATBOTS_DB from .env
async def test_the_working_directorys_env_file_fills_in_what_the_environment_does_not_set(
    settings: Config, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("CHATBOTS_DB=from-dotenv.db\nCHATBOTS_RETENTION_DAYS=3\n")
    env = _env(settings, CHATBOTS_RETENTION_DAYS="5")
    del env["CHATBOTS_DB"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", "purge", env=env, cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "older than 5 days" in out.decode(), "the environment wins over .env"
    assert (tmp_path / "from-dotenv.db").exists() and not (tmp_path / "chatbots.db").exists()


async def test_chat_leaves_a_running_bots_answer_in_flight_alone(settings: Config) -> None:
    """Only `chatbots run` may declare answers cut off: a terminal chat beside a live bot must not."""
    from chatbots.types import ConversationKey

    sql = open_database(settings.database_url, settings.db_path)
    answer = sql.begin_answer(sql.conversation_id(ConversationKey("slack", "T1", "C1", "1.0")), "m")
    sql.close()
    code, _, err = await _chatbots("chat", "hello", env=_env(settings))
    assert code == 0, err
    sql = open_database(settings.database_url, settings.db_path)
    try:
        [row] = sql.query_dicts("SELECT status FROM messages WHERE id = ?", [answer])
    finally:
        sql.close()
    assert row["status"] == "streaming"
