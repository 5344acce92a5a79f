"""Prometheus metrics for `GET /metrics`: replies, errors by kind, latency, tokens, moderation, cap refusals.

One registry per engine, so several bots in one process (tests) never mix their counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "chatbots_turns", "Messages handled, by platform and outcome (answered, failed, refused, flagged, ...)",
            ["platform", "outcome"], registry=self.registry,
        )
        self.errors = Counter(
            "chatbots_errors", "Failures by kind (rate_limited, timeout, unavailable, storage, internal, ...)",
            ["kind"], registry=self.registry,
        )
        self.first_token = Histogram(
            "chatbots_time_to_first_token_seconds", "From the message reaching the engine to the model's first text",
            ["platform"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.reply_time = Histogram(
            "chatbots_reply_seconds", "From the message reaching the engine to the finished reply",
            ["platform"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.tokens = Counter(
            "chatbots_tokens", "Model tokens used, by platform and kind (prompt, completion)",
            ["platform", "kind"], registry=self.registry,
        )
        self.moderation = Counter(
            "chatbots_moderation_decisions", "Moderation decisions by direction (in, out) and decision",
            ["direction", "decision"], registry=self.registry,
        )
        self.refusals = Counter(
            "chatbots_cap_refusals", "Requests refused by a usage cap or rate limit", ["platform"], registry=self.registry,
        )
        self.events = Counter(
            "chatbots_platform_events", "Platform events by what became of them (ignored, duplicate, turn, ...)",
            ["platform", "outcome"], registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
