"""Shared fixtures: a fake model server on loopback and engines wired to it over real HTTP, on the database the
suite runs on (tests/backend.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.store import Store
from tests.backend import SUITE_ON_POSTGRES, database_url, open_store
from tests.fakes.model_server import FakeModelServer
from tests.postgres import postgres_url  # noqa: F401 - a fixture


@pytest.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


@pytest.fixture
def settings(model_server: FakeModelServer, tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    return Config(
        openai_api_key="sk-test",
        openai_base_url=model_server.base_url,
        db_path=str(tmp_path / "chatbots.db"),
        database_url=database_url(request),
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
        engine = Engine(open_store(configured), OpenAIChat.from_settings(configured), configured)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        await engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def opened(settings: Config) -> Iterator[Callable[[], Store]]:
    """Opens a Store on the suite's database; every store opened in one test shares it."""
    stores: list[Store] = []

    def open_one() -> Store:
        stores.append(open_store(settings))
        return stores[-1]

    yield open_one
    for store in stores:
        store.close()


@pytest.fixture
def store(opened: Callable[[], Store]) -> Store:
    return opened()


_SQLITE_ONLY = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass leaves out the tests about SQLite itself (marked sqlite_only)."""
    if not SUITE_ON_POSTGRES:
        return
    kept = [item for item in items if item.get_closest_marker("sqlite_only") is None]
    left_out = [item for item in items if item.get_closest_marker("sqlite_only") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
    config.stash[_SQLITE_ONLY] = len(left_out)


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL (CHATBOTS_TEST_BACKEND=postgres)' if SUITE_ON_POSTGRES else 'SQLite'}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line, not one per test, when the PostgreSQL tests could not run here; the count the PostgreSQL pass
    left out."""
    from tests.postgres import SKIP_REASON

    if SUITE_ON_POSTGRES:
        terminalreporter.write_line(
            f"PostgreSQL pass: {config.stash.get(_SQLITE_ONLY, 0)} tests about SQLite itself (sqlite_only) left out"
        )

    skipped = terminalreporter.stats.get("skipped", [])
    if any(SKIP_REASON in str(getattr(report, "longrepr", "")) for report in skipped):
        terminalreporter.write_line(SKIP_REASON)
