"""The commands that need the platforms, found by `chatbots.cli` through the `chatbots.commands` entry points.

The core never names an adapter: the command line loads these by name, the way simonw/llm finds its plugins.
"""

from __future__ import annotations

import asyncio

from chatbots.config import Config


def run(settings: Config) -> int:
    """`chatbots run`: every configured platform in this process."""
    from .runner import run

    return asyncio.run(run(settings))


def doctor(settings: Config) -> int:
    """`chatbots doctor`: check each credential and endpoint, print the table."""
    from .doctor import doctor

    code, table = asyncio.run(doctor(settings))
    print(table)
    return code
