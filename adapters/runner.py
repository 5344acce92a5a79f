"""`chatbots run`: every configured platform on one event loop, over one engine, behind one web server."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import sys

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from chatbots.app import open_engine
from chatbots.config import ConfigError, Config
from chatbots.engine import Engine
from chatbots.metrics import CONTENT_TYPE
from chatbots.types import Outcome

from .service import Observer, PlatformService

log = logging.getLogger(__name__)

PLATFORM_VARIABLES = ("SLACK_BOT_TOKEN (with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN), SLACK_CLIENT_ID and "
                      "SLACK_CLIENT_SECRET (with SLACK_SIGNING_SECRET), or DISCORD_BOT_TOKEN")
UPKEEP_EVERY = 30.0
"""Seconds between upkeep rounds: lease checks each round; the purge itself claims a slot once an hour."""
LINGER = 2.0
"""Seconds a refused request's unread body is drained (so the sender can read the refusal) before closing."""
READ_BUFFER = 16 * 1024
"""Bytes of a request body buffered before the socket stops being read (aiohttp's default: 64 KiB, buffering up
to twice that). Small, so a crowd of senders whose bodies are never read costs little: 150 refused senders of
2 MiB bodies add about 20 MiB, against about 55 MiB with the default."""
SHUTDOWN_GRACE = 20.0
"""Seconds replies in flight get to finish after SIGTERM (Heroku allows 30 before SIGKILL)."""


def platform_services(settings: Config, engine: Engine) -> list[PlatformService]:
    services: list[PlatformService] = []
    if settings.slack_bot_token or settings.slack_oauth:
        from .slack import SlackService

        services.append(SlackService(settings, engine))
    if settings.discord_bot_token:
        from .discord import DiscordService

        services.append(DiscordService(settings, engine))
    return services


class Bot:
    """The running process: engine, platforms and the web server (Slack events, health)."""

    def __init__(self, settings: Config, engine: Engine | None = None) -> None:
        if not settings.slack_bot_token and not settings.slack_oauth and not settings.discord_bot_token:
            if settings.slack_app_token or settings.slack_signing_secret:
                raise ConfigError("SLACK_BOT_TOKEN is not set: the bot token (xoxb-...) is needed beside "
                                  "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET")
            raise ConfigError(f"no platform is configured: set {PLATFORM_VARIABLES}")
        self.config = settings
        self.engine = engine or open_engine(settings, recover=True)  # the answering process
        try:
            self.services = platform_services(settings, self.engine)
        except ConfigError:
            self.engine.discard()
            raise
        self.web = web.Application()  # handlers read bodies themselves, each within its own bounds
        self.web.router.add_get("/healthz", self._health)
        self.metrics_web: web.Application | None = None
        """`/metrics` on its own port (CHATBOTS_METRICS_PORT), for a scraper inside the network."""
        if settings.metrics_port:
            self.metrics_web = web.Application()
            self.metrics_web.router.add_get("/metrics", self._metrics)
        elif settings.metrics_token:
            self.web.router.add_get("/metrics", self._metrics)
        for service in self.services:
            service.add_routes(self.web)
            service.observers.append(self._counter_for(service.name))
        self._runners: list[web.AppRunner] = []
        self._purger: asyncio.Task[None] | None = None
        self.stopping = False
        self.port = 0
        self.metrics_port = 0

    async def _health(self, request: web.Request) -> web.Response:
        """200 while serving; 503 once shutting down or while the database does not answer, so a load balancer
        sends the work to a replica that can do it (this one recovers by itself when the database is back)."""
        if self.stopping:
            status = "stopping"
        elif not await self.engine.database_ready():
            status = "database unavailable"
        else:
            status = "ok"
        platforms = [service.name for service in self.services]
        return web.json_response({"status": status, "platforms": platforms}, status=200 if status == "ok" else 503)

    def _counter_for(self, platform: str) -> Observer:
        events = self.engine.metrics.events

        def count(outcome: Outcome) -> None:
            events.labels(platform, outcome.kind).inc()

        return count

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus scrape endpoint: with CHATBOTS_METRICS_TOKEN set, only for requests bearing it."""
        token = self.config.metrics_token
        if token is not None and not _bears(request, token):
            return web.Response(status=401, text="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return web.Response(body=self.engine.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self, host: str = "0.0.0.0") -> None:
        self.port = await self._listen(self.web, host, self.config.port)
        if self.metrics_web is not None:
            try:
                self.metrics_port = await self._listen(self.metrics_web, host, self.config.metrics_port or 0)
            except OSError as error:
                raise ConfigError(f"cannot listen on CHATBOTS_METRICS_PORT {self.config.metrics_port}: "
                                  f"{error.strerror}") from None
        for service in self.services:
            await service.start()
        settings = self.config
        if settings.moderation and not settings.moderation_base_url and settings.openai_base_url \
                and "api.openai.com" not in settings.openai_base_url:
            log.warning("moderation uses OPENAI_BASE_URL; many OpenAI-compatible servers have no /moderations: "
                        "`chatbots doctor` checks it (or set CHATBOTS_MODERATION_BASE_URL, or CHATBOTS_MODERATION=off)")
        self._purger = asyncio.create_task(self._upkeep_periodically(self.config.retention_days))
        log.info("serving %s on port %d", ", ".join(s.name for s in self.services), self.port)
        if self.metrics_web is not None:
            log.info("serving /metrics on port %d", self.metrics_port)

    async def _listen(self, app: web.Application, host: str, port: int) -> int:
        """Serve app on host:port (0: any free port); returns the port."""
        logging.getLogger("aiohttp.server").addFilter(_not_a_malformed_request)
        runner = web.AppRunner(app, access_log=None, lingering_time=LINGER, read_bufsize=READ_BUFFER)
        self._runners.append(runner)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return int(runner.addresses[0][1])

    async def _upkeep_periodically(self, days: int | None) -> None:
        """Forget old event ids and enforce CHATBOTS_RETENTION_DAYS (hourly); with replicas, expire answer leases."""
        while True:
            try:
                removed = await self.engine.upkeep(days)
            except self.engine.storage_errors as error:
                log.warning("upkeep skipped, the database is unavailable: %s", type(error).__name__)
            else:
                if removed:
                    log.info("retention: deleted %d messages older than %d days", removed, days)
            await asyncio.sleep(UPKEEP_EVERY)

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        self.stopping = True
        if self._purger is not None:
            self._purger.cancel()
        await asyncio.gather(*(service.stop(grace) for service in self.services))
        for runner in self._runners:
            await runner.cleanup()
        await self.engine.close()

    async def serve_until_stopped(self) -> None:
        """Run until SIGTERM/SIGINT or until a platform stops on its own."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping(signum: signal.Signals) -> None:
            log.warning("received %s: taking no new events, finishing replies in flight", signum.name)
            self.stopping = True
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping, signum)
        waiters = [asyncio.create_task(service.wait_closed()) for service in self.services]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        for task in [stopper, *waiters]:
            if task not in done:
                task.cancel()
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("a platform stopped: %s", task.exception())


async def run(settings: Config) -> int:
    bot = Bot(settings)
    try:
        await bot.start()
    except ConfigError:
        await bot.stop(grace=0)
        raise
    except OSError as error:
        await bot.stop(grace=0)
        print(f"chatbots: cannot listen on port {settings.port}: {error.strerror} (set PORT)", file=sys.stderr)
        return 2
    await bot.serve_until_stopped()
    await bot.stop()
    return 0


def _bears(request: web.Request, token: str) -> bool:
    """Whether the request carries exactly one `Authorization: Bearer <token>`, compared in constant time."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return False
    scheme, _, presented = values[0].partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def _not_a_malformed_request(record: logging.LogRecord) -> bool:
    """aiohttp answers a request it cannot parse with 400 and logs a traceback: the sender's fault, not news."""
    return not (record.exc_info and isinstance(record.exc_info[1], HttpProcessingError))
