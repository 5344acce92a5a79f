"""Prometheus metrics for `GET /metrics`: replies, errors by kind, latency, tokens, moderation, cap refusals.

A few labelled counters and histograms in the text exposition format (label names in declaration order, `le`
last). One set per engine, so several bots in one process (tests) never mix their counts.
"""

from __future__ import annotations

import bisect
import math

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else f"{value:.1f}"


class Counter:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self._values: dict[tuple[str, ...], float] = {}

    def labels(self, *values: str) -> _CounterChild:
        return _CounterChild(self, tuple(values))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name}_total {self.help}", f"# TYPE {self.name}_total counter"]
        lines += [f"{self.name}_total{_labels(self.label_names, key)} {_number(value)}" for key, value in sorted(self._values.items())]
        return lines


class _CounterChild:
    __slots__ = ("parent", "key")

    def __init__(self, parent: Counter, key: tuple[str, ...]) -> None:
        self.parent, self.key = parent, key

    def inc(self, amount: float = 1.0) -> None:
        values = self.parent._values
        values[self.key] = values.get(self.key, 0.0) + amount


class Histogram:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.label_names, self.buckets = name, help_text, label_names, buckets
        self._series: dict[tuple[str, ...], list[float]] = {}
        """Per label set: a count per bucket (not cumulative), then the sum, then the count."""

    def labels(self, *values: str) -> _HistogramChild:
        return _HistogramChild(self, tuple(values))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, series in sorted(self._series.items()):
            running = 0.0
            for bound, hits in zip((*self.buckets, math.inf), series):
                running += hits
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(running)}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-1])}")
        return lines


class _HistogramChild:
    __slots__ = ("parent", "key")

    def __init__(self, parent: Histogram, key: tuple[str, ...]) -> None:
        self.parent, self.key = parent, key

    def observe(self, value: float) -> None:
        parent = self.parent
        series = parent._series.get(self.key)
        if series is None:
            series = parent._series[self.key] = [0.0] * (len(parent.buckets) + 3)
        series[bisect.bisect_left(parent.buckets, value)] += 1
        series[-2] += value
        series[-1] += 1


class Metrics:
    def __init__(self) -> None:
        self.turns = Counter("chatbots_turns", "Messages handled, by platform and outcome (answered, failed, refused, flagged, ...)",
                             ("platform", "outcome"))
        self.errors = Counter("chatbots_errors", "Failures by kind (rate_limited, timeout, unavailable, storage, internal, ...)",
                              ("kind",))
        self.first_token = Histogram("chatbots_time_to_first_token_seconds",
                                     "From the message reaching the engine to the model's first text", ("platform",), LATENCY_BUCKETS)
        self.reply_time = Histogram("chatbots_reply_seconds", "From the message reaching the engine to the finished reply",
                                    ("platform",), LATENCY_BUCKETS)
        self.tokens = Counter("chatbots_tokens", "Model tokens used, by platform and kind (prompt, completion)", ("platform", "kind"))
        self.moderation = Counter("chatbots_moderation_decisions", "Moderation decisions by direction (in, out) and decision",
                                  ("direction", "decision"))
        self.refusals = Counter("chatbots_cap_refusals", "Requests refused by a usage cap or rate limit", ("platform",))
        self.events = Counter("chatbots_platform_events", "Platform events by what became of them (ignored, duplicate, turn, ...)",
                              ("platform", "outcome"))

    def exposition(self) -> bytes:
        families = (self.turns, self.errors, self.first_token, self.reply_time, self.tokens, self.moderation,
                    self.refusals, self.events)
        return ("\n".join(line for family in families for line in family.render()) + "\n").encode()
