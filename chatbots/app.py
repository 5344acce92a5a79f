"""Opening the core from settings: one way in for the command line, the runner and the tests."""

from __future__ import annotations

from .config import Config
from .engine import Engine
from .model import OpenAIChat
from .store import Store, open_database


def open_engine(settings: Config, *, recover: bool = False) -> Engine:
    """Store, model client and engine, from settings.

    recover marks answers left half-written by a previous process as interrupted: only the process that answers
    (`chatbots run`) may do that, since a second process (`chatbots chat`) would cut off a live bot's answers.
    """
    settings.require_model_access()
    store = Store(open_database(settings.database_url, settings.db_path))
    if recover and not store.shared:
        store.sql.recover_interrupted()  # before any turn; with replicas, answer leases decide (retention.upkeep)
    return Engine(store, OpenAIChat.from_settings(settings), settings)
