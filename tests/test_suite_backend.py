"""CHATBOTS_TEST_BACKEND=postgres runs the suite on PostgreSQL, leaving out only the tests about SQLite itself.

The PostgreSQL pass of CI runs the second test below on PostgreSQL; the first pass on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chatbots.config import Config
from chatbots.store.postgres import PostgresDatabase
from tests.backend import SUITE_ON_POSTGRES

ROOT = Path(__file__).parent.parent


def test_the_postgresql_pass_leaves_out_the_sqlite_tests_and_says_how_many() -> None:
    env = {**os.environ, "CHATBOTS_TEST_BACKEND": "postgres"}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "tests/test_store.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=50,
    )
    out = ran.stdout
    assert ran.returncode == 0, out + ran.stderr
    assert "PostgreSQL pass: 4 tests about SQLite itself (sqlite_only) left out" in out, out
    assert "4 deselected" in out, out
    assert "test_migrations_run_once_and_enable_wal" not in out and "test_same_channel_names_in_two_workspaces" in out


def test_the_suites_stores_are_on_the_backend_it_names(settings: Config, engine: object) -> None:
    store = engine.store  # type: ignore[attr-defined]
    assert isinstance(store.sql, PostgresDatabase) == SUITE_ON_POSTGRES
    assert (settings.database_url is not None) == SUITE_ON_POSTGRES
