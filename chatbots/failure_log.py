"""Where failures are reported: one log line per kind of failure per interval, with a count, and a metric.

A wrong key fails every message: the operator needs one line saying so, not one per message burying everything
else. The first failure of a kind is logged at once; more of the same within the interval are only counted, and
the next one after it is logged with how many were not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from .lru import LRU

INTERVAL = 60.0
"""Seconds during which repeats of one failure are counted rather than logged."""
MAX_TRACKED = 1024
"""Distinct failures remembered; the least recent are forgotten first (and logged afresh if they come back)."""

log = logging.getLogger(__name__)


class Labelled(Protocol):
    def labels(self, *values: str) -> Any: ...


@dataclass(slots=True)
class _Seen:
    logged_at: float
    unlogged: int = 0


class ThrottledLog:
    """Logs a message at most once per interval per key, then with the count of repeats it held back."""

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._seen: LRU[Hashable, _Seen] = LRU(MAX_TRACKED)

    def log(self, logger: logging.Logger, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Log unless the same key was logged within the interval; True when it was logged."""
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.logged_at < self.interval:
            seen.unlogged += 1
            return False
        if seen is not None and seen.unlogged:
            message += " (%d more like this in the last %.0f s)"
            args = (*args, seen.unlogged, now - seen.logged_at)
        self._seen.put(key, _Seen(now))
        logger.log(level, message, *args)
        return True


class FailureLog:
    """Reports failures: counted by source and kind (chatbots_failures_total), logged once per interval."""

    def __init__(self, counter: Labelled | None = None, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counter = counter
        self.throttle = ThrottledLog(interval, clock)

    def report(self, source: str, kind: str, message: str, *args: object, logger: logging.Logger = log,
               key: Hashable = None, level: int = logging.WARNING) -> None:
        """One failure of `kind` from `source` (model, moderation, slack, discord), in the caller's logger.

        message and args must carry no message text or secret; key tells repeats apart (by default the kind and
        args)."""
        if self.counter is not None:
            self.counter.labels(source, str(kind)).inc()
        self.throttle.log(logger, level, (source, str(kind), key if key is not None else args), message, *args)
