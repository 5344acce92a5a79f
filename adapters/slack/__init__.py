"""Slack: mentions and threads answered through the core."""

from .service import SlackService

__all__ = ["SlackService"]
