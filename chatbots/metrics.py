"""Prometheus metrics for `GET /metrics`: replies, errors by kind, latency, tokens, moderation, cap refusals.

prometheus_client's counters and histograms in a registry of their own per engine, so several bots in one
process (tests) never mix their counts. It costs about 1.4 MiB of RSS once aiohttp is loaded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # a `_created` series per label set doubles the scrape and says nothing we use

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What generate_latest writes: the classic text format every Prometheus reads."""
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.turns = Counter("chatbots_turns", "Messages handled, by platform and outcome (answered, failed, refused, flagged, ...)",
                             ("platform", "outcome"), registry=registry)
        self.errors = Counter("chatbots_errors", "Failures by kind (rate_limited, timeout, unavailable, storage, internal, ...)",
                              ("kind",), registry=registry)
        self.failures = Counter("chatbots_failures", "Failed calls by source (model, moderation, slack, discord) and kind "
                                "(key_refused, model_unknown, quota_exhausted, rate_limited, ...)", ("source", "kind"),
                                registry=registry)
        self.first_token = Histogram("chatbots_time_to_first_token_seconds",
                                     "From the message reaching the engine to the model's first text", ("platform",),
                                     buckets=LATENCY_BUCKETS, registry=registry)
        self.reply_time = Histogram("chatbots_reply_seconds", "From the message reaching the engine to the finished reply",
                                    ("platform",), buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("chatbots_tokens", "Model tokens used, by platform and kind (prompt, completion)",
                              ("platform", "kind"), registry=registry)
        self.moderation = Counter("chatbots_moderation_decisions", "Moderation decisions by direction (in, out) and decision",
                                  ("direction", "decision"), registry=registry)
        self.unmoderated_images = Counter("chatbots_moderation_unmoderated_images",
                                          "Images let through unchecked: the moderation model takes no image inputs",
                                          registry=registry)
        self.refusals = Counter("chatbots_cap_refusals", "Requests refused by a usage cap or rate limit", ("platform",),
                                registry=registry)
        self.events = Counter("chatbots_platform_events", "Platform events by what became of them (ignored, duplicate, turn, ...)",
                              ("platform", "outcome"), registry=registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
