"""Where failures are reported: one log line per kind of failure per interval, with a count, and a metric.

A wrong key fails every message: the operator needs one line saying so, not one per message burying everything
else. The first failure of a kind is logged at once; more of the same within the interval are only counted, and
their count is logged when the interval ends: by flush(), which the engine's periodic upkeep calls, or by the
next failure of that kind after it, whichever comes first.
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
    held: tuple[logging.Logger, int, str, tuple[object, ...]] | None = None
    """The latest held-back line (logger, level, message, args), logged with the count when the interval ends."""


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
            seen.held = (logger, level, message, args)
            return False
        if seen is not None and seen.unlogged:
            message += " (%d more like this in the last %.0f s)"
            args = (*args, seen.unlogged, now - seen.logged_at)
        self._seen.put(key, _Seen(now))
        logger.log(level, message, *args)
        return True

    def flush(self) -> int:
        """Log the count of repeats held back by every key whose interval has ended; how many lines were logged.

        Such a key starts a new interval, so its repeats stay at most one line per interval."""
        now = self.clock()
        logged = 0
        for seen in self._seen.values():
            if not seen.unlogged or seen.held is None or now - seen.logged_at < self.interval:
                continue
            logger, level, message, args = seen.held
            logger.log(level, message + " (%d more like this in the last %.0f s)", *args, seen.unlogged, now - seen.logged_at)
            seen.logged_at, seen.unlogged, seen.held = now, 0, None
            logged += 1
        return logged


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

    def flush(self) -> int:
        """Log the held-back counts whose interval has ended (called by the engine's periodic upkeep)."""
        return self.throttle.flush()
