"""Shared fixtures: a fake model server on loopback and engines wired to it over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.store import Store
from tests.fakes.model_server import FakeModelServer
from tests.postgres import postgres_url  # noqa: F401 - a fixture


@pytest.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


@pytest.fixture
def settings(model_server: FakeModelServer, tmp_path: Path) -> Config:
    return Config(
        openai_api_key="sk-test",
        openai_base_url=model_server.base_url,
        db_path=str(tmp_path / "chatbots.db"),
        stall_timeout=5.0,
        model_retries=2,
        moderation=False,  # on in production; the moderation tests turn it on
    )


@pytest.fixture
async def make_engine(settings: Config) -> AsyncIterator[Callable[..., Engine]]:
    """Build an engine over the fake model; keyword arguments override settings."""
    engines: list[Engine] = []

    def build(**overrides: Any) -> Engine:
        configured = replace(settings, **overrides)
        engine = Engine(Store.open(configured.db_path), OpenAIChat.from_settings(configured), configured)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        await engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line, not one per test, when the PostgreSQL tests could not run here."""
    from tests.postgres import SKIP_REASON

    skipped = terminalreporter.stats.get("skipped", [])
    if any(SKIP_REASON in str(getattr(report, "longrepr", "")) for report in skipped):
        terminalreporter.write_line(SKIP_REASON)
