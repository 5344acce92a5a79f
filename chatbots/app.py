"""Opening the core from settings: one way in for the command line, the runner and the tests."""

from __future__ import annotations

from .config import Config
from .engine import Engine
from .model import OpenAIChat
from .store import Store


def open_engine(settings: Config, *, recover: bool = False) -> Engine:
    """Store, model client and engine, from settings.

    recover marks answers left half-written by a previous process as interrupted: only the process that answers
    (`chatbots run`) may do that, since a second process (`chatbots chat`) would cut off a live bot's answers.
    """
    settings.require_model_access()
    store = Store.open(settings.db_path)
    if recover:
        store.sql.recover_interrupted()  # before any turn
    return Engine(store, OpenAIChat.from_settings(settings), settings)
