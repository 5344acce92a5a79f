"""`chatbots run`: every configured platform on one event loop, over one engine."""

from __future__ import annotations

import sys

from chatbots.config import Settings

PLATFORM_VARIABLES = "SLACK_BOT_TOKEN (with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN) or DISCORD_BOT_TOKEN"


async def run(settings: Settings) -> int:
    if not settings.slack_bot_token and not settings.discord_bot_token:
        print(f"chatbots: no platform is configured: set {PLATFORM_VARIABLES}", file=sys.stderr)
        return 2
    print("chatbots: platform adapters are not available yet", file=sys.stderr)
    return 2
