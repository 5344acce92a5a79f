"""Configuration from the environment (12-factor), with one clear error per bad variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


REDACTABLE = frozenset({"emails", "phones", "cards", "keys"})
HEADER_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The characters an HTTP header name may hold (RFC 9110 token)."""
REASONING_EFFORTS = ("low", "medium", "high")
VISION_MODES = ("auto", "on", "off")
METRICS_TOKEN_MIN = 16
"""Characters: a shorter bearer token on a public port could be guessed."""


class ConfigError(Exception):
    """A missing or invalid setting; the message names the variable and is shown as one line."""


@dataclass(frozen=True, slots=True)
class Config:
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_org_id: str | None = None
    """Sent as OpenAI-Organization to the chat server."""
    openai_project_id: str | None = None
    """Sent as OpenAI-Project to the chat server."""
    model_headers: tuple[tuple[str, str], ...] = ()
    """CHATBOTS_MODEL_HEADERS: extra headers for gateways and Azure-style deployments, sent to the chat server."""
    model: str = "gpt-4o-mini"
    default_instructions: str | None = None
    """System instructions for workspaces that have not set their own."""
    db_path: str = "chatbots.db"
    database_url: str | None = None
    """DATABASE_URL: a PostgreSQL server shared by every replica; without it, the SQLite file db_path."""
    max_output_tokens: int | None = None
    """Sent to the model as its output cap when set; trimming always reserves room for an answer."""
    context_tokens: int | None = None
    reasoning_effort: str | None = None
    """CHATBOTS_REASONING_EFFORT: sent to the model as reasoning_effort when set."""
    stall_timeout: float = 60.0
    model_retries: int = 3
    log_level: str = "INFO"
    log_format: str = "text"
    allow_bots: bool = False
    admins: frozenset[str] = frozenset()
    """Platform user ids that may change settings in any workspace, besides the platforms' own admins."""
    prices: str | None = None
    """CHATBOTS_PRICES overrides, parsed by pricing.parse_prices."""
    dm_limit_user: int | None = None
    """Daily tokens per person in direct messages (both platforms); the stricter of this and an admin's cap applies."""
    dm_limit_rate: int | None = None
    """Requests per person per minute in direct messages; the stricter of this and an admin's cap applies."""
    moderation: bool = True
    moderation_base_url: str | None = None
    moderation_api_key: str | None = None
    moderation_model: str = "omni-moderation-latest"
    moderation_on_error: str = "block"
    store_flagged_text: bool = False
    retention_days: int | None = None
    redact: frozenset[str] = frozenset()
    """Answer other bots' messages too (never the bot's own)."""
    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str | None = None
    slack_client_id: str | None = None
    """With SLACK_CLIENT_SECRET and no SLACK_BOT_TOKEN: OAuth mode, installable in many workspaces."""
    slack_client_secret: str | None = None
    slack_scopes: tuple[str, ...] = ()
    """SLACK_SCOPES: bot scopes asked for at install; empty means the manifests' own."""
    slack_redirect_uri: str | None = None
    slack_state_secret: str | None = None
    """Signs install states; unset, one derived from SLACK_CLIENT_SECRET."""
    port: int = 3000
    discord_bot_token: str | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_shard_count: int | None = None
    """DISCORD_SHARD_COUNT: shards across all processes; unset, Discord's recommendation (GET /gateway/bot)."""
    discord_shards: tuple[int, ...] | None = None
    """DISCORD_SHARDS: the shard ids this process runs; unset, all of them."""
    file_max_bytes: int = 10_000_000
    """CHATBOTS_FILE_MAX_BYTES: a shared file bigger than this is not fetched (or the download stops there)."""
    file_max_count: int = 10
    """CHATBOTS_FILE_MAX_COUNT: files read per message; the rest get a note."""
    pdf_max_pages: int = 50
    """CHATBOTS_PDF_MAX_PAGES: pages of a PDF whose text is read."""
    file_max_chars: int = 50_000
    """CHATBOTS_FILE_MAX_CHARS: characters of text read from one file (PDF or text file)."""
    file_timeout: float = 30.0
    """CHATBOTS_FILE_TIMEOUT: seconds one file's download may take."""
    vision: str = "auto"
    """CHATBOTS_VISION: auto (send images; a model that refuses them is remembered), on (always), off (never)."""
    metrics_token: str | None = None
    """`GET /metrics` on PORT answers only requests bearing this token."""
    metrics_port: int | None = None
    """`GET /metrics` is served on this port instead, for a scraper inside the network; PORT has none."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        defaults = cls()

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, parse: Callable[[str], T], default: T, minimum: float) -> T:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = parse(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:  # type: ignore[operator]
                raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
            return value

        def flag(name: str) -> bool:
            raw = (text(name) or "false").lower()
            if raw not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ConfigError(f"{name} must be true or false, got {raw!r}")
            return raw in {"1", "true", "yes", "on"}

        base_url = text("OPENAI_BASE_URL")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"OPENAI_BASE_URL must start with http:// or https://, got {base_url!r}")
        on_error = (text("CHATBOTS_MODERATION_ON_ERROR") or "block").lower()
        if on_error not in ("block", "allow"):
            raise ConfigError(f"CHATBOTS_MODERATION_ON_ERROR must be block or allow, got {on_error!r}")
        redact = frozenset(part.strip().lower() for part in (text("CHATBOTS_REDACT") or "").split(",") if part.strip())
        unknown = redact - REDACTABLE
        if unknown:
            raise ConfigError(f"CHATBOTS_REDACT takes {', '.join(sorted(REDACTABLE))}; unknown: {', '.join(sorted(unknown))}")
        moderation_url = text("CHATBOTS_MODERATION_BASE_URL")
        if moderation_url and not moderation_url.startswith(("http://", "https://")):
            raise ConfigError(f"CHATBOTS_MODERATION_BASE_URL must start with http:// or https://, got {moderation_url!r}")
        log_format = (text("CHATBOTS_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"CHATBOTS_LOG_FORMAT must be text or json, got {log_format!r}")
        level = (text("CHATBOTS_LOG_LEVEL") or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"CHATBOTS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        metrics_token = text("CHATBOTS_METRICS_TOKEN")
        if metrics_token is not None and len(metrics_token) < METRICS_TOKEN_MIN:
            raise ConfigError(f"CHATBOTS_METRICS_TOKEN must be at least {METRICS_TOKEN_MIN} characters "
                              "(for example the output of `openssl rand -hex 32`)")
        port, metrics_port = number("PORT", int, defaults.port, 1), number("CHATBOTS_METRICS_PORT", int, None, 1)
        for name, value in (("PORT", port), ("CHATBOTS_METRICS_PORT", metrics_port)):
            if value is not None and value > 65535:
                raise ConfigError(f"{name} must be at most 65535, got {value}")
        if metrics_port == port:
            raise ConfigError("CHATBOTS_METRICS_PORT must differ from PORT: it keeps /metrics off the public port")
        effort = (text("CHATBOTS_REASONING_EFFORT") or "").lower() or None
        if effort is not None and effort not in REASONING_EFFORTS:
            raise ConfigError(f"CHATBOTS_REASONING_EFFORT must be low, medium or high, got {effort!r}")
        shard_count = number("DISCORD_SHARD_COUNT", int, None, 1)
        vision = (text("CHATBOTS_VISION") or "auto").lower()
        if vision not in VISION_MODES:
            raise ConfigError(f"CHATBOTS_VISION must be auto, on or off, got {vision!r}")
        shards = parse_shards(text("DISCORD_SHARDS"), shard_count)
        if bool(text("SLACK_CLIENT_ID")) != bool(text("SLACK_CLIENT_SECRET")):
            raise ConfigError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together (Basic Information > App Credentials)")
        redirect_uri = text("SLACK_REDIRECT_URI")
        if redirect_uri and not redirect_uri.startswith(("http://", "https://")):
            raise ConfigError(f"SLACK_REDIRECT_URI must start with https://, got {redirect_uri!r}")
        return cls(
            openai_api_key=text("OPENAI_API_KEY"),
            openai_base_url=base_url,
            openai_org_id=text("OPENAI_ORG_ID"),
            openai_project_id=text("OPENAI_PROJECT_ID"),
            model_headers=parse_headers(text("CHATBOTS_MODEL_HEADERS")),
            model=text("CHATBOTS_MODEL") or defaults.model,
            default_instructions=text("CHATBOTS_INSTRUCTIONS"),
            db_path=text("CHATBOTS_DB") or defaults.db_path,
            database_url=database_url(text("DATABASE_URL")),
            max_output_tokens=number("CHATBOTS_MAX_OUTPUT_TOKENS", int, None, 1),
            context_tokens=number("CHATBOTS_CONTEXT_TOKENS", int, None, 256),
            reasoning_effort=effort,
            stall_timeout=number("CHATBOTS_STALL_TIMEOUT", float, defaults.stall_timeout, 0.01),
            model_retries=number("CHATBOTS_MODEL_RETRIES", int, defaults.model_retries, 0),
            log_level=level,
            log_format=log_format,
            allow_bots=flag("CHATBOTS_ALLOW_BOTS"),
            admins=frozenset(part.strip() for part in (text("CHATBOTS_ADMINS") or "").split(",") if part.strip()),
            prices=text("CHATBOTS_PRICES"),
            dm_limit_user=number("CHATBOTS_DM_LIMIT_USER", int, None, 1),
            dm_limit_rate=number("CHATBOTS_DM_LIMIT_RATE", int, None, 1),
            moderation=(text("CHATBOTS_MODERATION") or "on").lower() not in ("off", "false", "0", "no"),
            moderation_base_url=moderation_url,
            moderation_api_key=text("CHATBOTS_MODERATION_API_KEY"),
            moderation_model=text("CHATBOTS_MODERATION_MODEL") or defaults.moderation_model,
            moderation_on_error=on_error,
            store_flagged_text=flag("CHATBOTS_STORE_FLAGGED_TEXT"),
            retention_days=number("CHATBOTS_RETENTION_DAYS", int, None, 1),
            redact=redact,
            slack_bot_token=text("SLACK_BOT_TOKEN"),
            slack_app_token=text("SLACK_APP_TOKEN"),
            slack_signing_secret=text("SLACK_SIGNING_SECRET"),
            slack_api_url=text("SLACK_API_URL"),
            slack_client_id=text("SLACK_CLIENT_ID"),
            slack_client_secret=text("SLACK_CLIENT_SECRET"),
            slack_scopes=tuple(part.strip() for part in (text("SLACK_SCOPES") or "").split(",") if part.strip()),
            slack_redirect_uri=redirect_uri,
            slack_state_secret=text("SLACK_STATE_SECRET"),
            port=port,
            discord_bot_token=text("DISCORD_BOT_TOKEN"),
            discord_api_url=text("DISCORD_API_URL"),
            discord_gateway_url=text("DISCORD_GATEWAY_URL"),
            discord_shard_count=shard_count,
            discord_shards=shards,
            file_max_bytes=number("CHATBOTS_FILE_MAX_BYTES", int, defaults.file_max_bytes, 1),
            file_max_count=number("CHATBOTS_FILE_MAX_COUNT", int, defaults.file_max_count, 1),
            pdf_max_pages=number("CHATBOTS_PDF_MAX_PAGES", int, defaults.pdf_max_pages, 1),
            file_max_chars=number("CHATBOTS_FILE_MAX_CHARS", int, defaults.file_max_chars, 1),
            file_timeout=number("CHATBOTS_FILE_TIMEOUT", float, defaults.file_timeout, 0.1),
            vision=vision,
            metrics_token=metrics_token,
            metrics_port=metrics_port,
        )

    @property
    def slack_oauth(self) -> bool:
        """Slack in OAuth mode: installed per workspace through /slack/install, tokens kept in the database."""
        return bool(self.slack_client_id and self.slack_client_secret and not self.slack_bot_token)

    def require_model_access(self) -> None:
        """Fail early when the model server cannot be reached with these settings."""
        if not self.openai_api_key and not self.openai_base_url:
            raise ConfigError(
                "OPENAI_API_KEY is not set (or set OPENAI_BASE_URL to an OpenAI-compatible server that needs no key)"
            )


def parse_shards(raw: str | None, count: int | None) -> tuple[int, ...] | None:
    """DISCORD_SHARDS `0,1` against DISCORD_SHARD_COUNT: distinct ids from 0 to count - 1, in the order given."""
    if raw is None:
        return None
    if count is None:
        raise ConfigError("DISCORD_SHARDS needs DISCORD_SHARD_COUNT (the number of shards across all processes)")
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts or not all(part.isascii() and part.isdigit() for part in parts):
        raise ConfigError(f"DISCORD_SHARDS must be shard ids separated by commas, like 0,1; got {raw!r}")
    shards = tuple(int(part) for part in parts)
    outside = [shard for shard in shards if shard >= count]
    if outside:
        raise ConfigError(f"DISCORD_SHARDS ids must be from 0 to {count - 1} (DISCORD_SHARD_COUNT={count}), "
                          f"got {outside[0]}")
    repeated = next((shard for shard in shards if shards.count(shard) > 1), None)
    if repeated is not None:
        raise ConfigError(f"DISCORD_SHARDS lists shard {repeated} twice")
    return shards


def parse_headers(raw: str | None) -> tuple[tuple[str, str], ...]:
    """`Name: value; Name2: value2` as (name, value) pairs. The error names the entry by position, never its value."""
    if raw is None:
        return ()
    headers: list[tuple[str, str]] = []
    for number, entry in enumerate((part.strip() for part in raw.split(";")), start=1):
        if not entry:
            continue
        name, colon, value = entry.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or not value or not set(name) <= HEADER_NAME_CHARS or any(c < " " for c in value):
            raise ConfigError(f"CHATBOTS_MODEL_HEADERS must read `Name: value; Name2: value2`; entry {number} does not "
                              "(a header name, a colon, a value without control characters)")
        headers.append((name, value))
    return tuple(headers)


def database_url(raw: str | None) -> str | None:
    """DATABASE_URL as given, when it names PostgreSQL (postgres:// as Heroku writes it, or postgresql://)."""
    if raw is None:
        return None
    if raw.split("://", 1)[0] not in ("postgres", "postgresql") or "://" not in raw:
        raise ConfigError("DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/database)")
    return raw
