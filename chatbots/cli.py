"""The `chatbots` command: run the bot, chat in a terminal, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import entry_points, version

from dotenv import load_dotenv

from .app import open_engine
from .config import ConfigError, Config
from .logs import configure_logging
from .store import StoreError, open_database
from .store.sqlite import sqlite_error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbots", description="OpenAI-compatible chat models in Slack and Discord.")
    parser.add_argument("--version", action="version", version=f"chatbots {version('chatbots')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("run", help="start every configured platform (Slack, Discord) in one process")
    commands.add_parser("doctor", help="check each configured credential and endpoint; print a fix for each failure")

    chat = commands.add_parser("chat", help="talk to the model in this terminal, through the same engine and store")
    chat.add_argument("prompt", nargs="?", help="send one message and exit (piped stdin is included before it)")
    chat.add_argument("--new", action="store_true", help="start a new conversation instead of continuing the last one")
    chat.add_argument("--model", help="model to use (default: CHATBOTS_MODEL)")
    chat.add_argument("--system", help="save these system instructions for the console and use them from now on")
    chat.add_argument("--file", action="append", default=[], metavar="PATH",
                      help="share a file with the (first) message: an image, a PDF or a text file; repeatable")

    usage = commands.add_parser("usage", help="tokens and estimated cost per workspace, user and model")
    usage.add_argument("--workspace", help="only this workspace: ID or PLATFORM:ID")
    usage.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    usage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    usage.add_argument("--month", nargs="?", const="current", metavar="YYYY-MM",
                       help="a calendar month (UTC) instead of --days: this one, or the one named")

    audit = commands.add_parser("audit", help="who changed which setting, when, from what to what")
    audit.add_argument("--workspace", help="only this workspace: ID or PLATFORM:ID")

    feedback = commands.add_parser("feedback", help="answers people voted down, with the question they answered")
    feedback.add_argument("--days", type=int, default=30, help="how many days back (default 30)")

    moderation = commands.add_parser("moderation-log", help="moderation decisions: direction, verdict, categories")
    moderation.add_argument("--days", type=int, default=7, help="how many days back (default 7)")
    moderation.add_argument("--flagged", action="store_true", help="only blocked messages")

    export = commands.add_parser("export", help="a workspace's conversations as JSON lines (audits, moving)")
    export.add_argument("--workspace", required=True, help="ID or PLATFORM:ID")
    export.add_argument("--output", help="file to write (default: standard output)")

    commands.add_parser("installations", help="Slack workspaces and orgs the app is installed in (OAuth mode): ids, "
                                              "names, when and by whom; never tokens")

    purge = commands.add_parser("purge", help="delete stored messages older than the retention period now")
    purge.add_argument("--days", type=int, help="retention in days (default: CHATBOTS_RETENTION_DAYS)")

    commands.add_parser("migrate", help="create or upgrade the database's schema (DATABASE_URL, else CHATBOTS_DB) and "
                                        "exit: a deployment's release step; safe to run while replicas start")

    migrate = commands.add_parser("migrate-db", help="copy the SQLite database (CHATBOTS_DB) into PostgreSQL; safe to repeat")
    migrate.add_argument("--to", required=True, metavar="URL", help="the target: postgresql://USER:PASSWORD@HOST/DATABASE")
    return parser


async def _chat(settings: Config, args: argparse.Namespace) -> int:
    from . import console

    try:
        files = [console.local_file(path) for path in args.file]
    except OSError as error:
        print(f"chatbots chat: {error}", file=sys.stderr)
        return 2
    engine = open_engine(settings)
    try:
        # Written before any turn: a database that cannot be written stops the command here, with one line.
        workspace = await engine.store.workspace_id(console.PLATFORM, console.WORKSPACE)
        if args.system is not None:
            await engine.store.set_setting(workspace, "instructions", args.system.strip() or None)
        return await console.chat(engine, new=args.new, prompt=args.prompt, stdin=sys.stdin, out=sys.stdout, files=files)
    finally:
        await engine.close()


MAX_DAYS = 36_500
"""A century: further back than anything stored, and well inside what date arithmetic can reach."""


def _check_days(days: int, name: str) -> None:
    if days < 1:
        raise ConfigError(f"{name} must be at least 1")
    if days > MAX_DAYS:
        raise ConfigError(f"{name} must be at most {MAX_DAYS}, got {days}")


def _month(given: str | None, current: str) -> str | None:
    """--month's value: None (not given), this month, or a YYYY-MM month."""
    if given is None:
        return None
    if given == "current":
        return current
    if len(given) != 7 or not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", given):
        raise ConfigError(f"--month must look like 2026-12, got {given[:20]!r}")
    return given


def _report(settings: Config, args: argparse.Namespace) -> str:
    from .pricing import PriceList, parse_prices
    from .reports import (
        audit_report,
        feedback_report,
        installations_report,
        moderation_report,
        usage_report,
        workspace_filter,
    )
    from .retention import purge_old

    if getattr(args, "days", None) is not None:
        _check_days(args.days, "--days")
    store = open_database(settings.database_url, settings.db_path)
    try:
        if args.command == "usage":
            prices = PriceList(parse_prices(settings.prices))
            month = _month(args.month, store.clock().date().isoformat()[:7])
            return usage_report(store, prices, args.days, workspace_filter(store, args.workspace), args.csv, month)
        if args.command == "installations":
            return installations_report(store)
        if args.command == "audit":
            return audit_report(store, workspace_filter(store, args.workspace))
        if args.command == "moderation-log":
            return moderation_report(store, args.days, args.flagged)
        if args.command == "purge":
            days = args.days or settings.retention_days
            if not days:
                raise ConfigError("purge needs --days N or CHATBOTS_RETENTION_DAYS")
            _check_days(days, "--days" if args.days else "CHATBOTS_RETENTION_DAYS")
            return f"Deleted {purge_old(store, days)} messages older than {days} days; usage totals are kept."
        return feedback_report(store, args.days)
    finally:
        store.close()


def _export(settings: Config, args: argparse.Namespace) -> int:
    from .reports import export_workspace, workspace_filter

    store = open_database(settings.database_url, settings.db_path)
    try:
        workspace = workspace_filter(store, args.workspace)
        assert workspace is not None
        if args.output:
            try:
                out = open(args.output, "w", encoding="utf-8")
            except OSError as error:
                raise ConfigError(f"cannot write --output {args.output}: {error.strerror}") from None
            with out:
                count = export_workspace(store, workspace, out)
        else:
            count = export_workspace(store, workspace, sys.stdout)
    finally:
        store.close()
    print(f"exported {count} messages from {workspace[0]}:{workspace[1]}", file=sys.stderr)
    return 0


def _migrate(settings: Config) -> str:
    """`chatbots migrate`: the schema brought up to date the way every process opens the database (under the
    database's lock, so replicas starting meanwhile wait and then find it done); what was applied."""
    database = open_database(settings.database_url, settings.db_path)
    try:
        applied, _ = database.applied_migrations()
    finally:
        database.close()
    if settings.database_url:
        from .store.postgres import safe_url

        where = safe_url(settings.database_url)
    else:
        where = settings.db_path
    if database.migrated:
        return f"{where}: applied {', '.join(database.migrated)} ({len(applied)} migrations in all)"
    return f"{where}: up to date ({len(applied)} migrations applied)"


def _command(settings: Config, args: argparse.Namespace) -> int:
    """Run one command; its exit code."""
    if args.command == "chat":
        return asyncio.run(_chat(settings, args))
    if args.command == "export":
        return _export(settings, args)
    if args.command == "migrate":
        print(_migrate(settings))
        return 0
    if args.command == "migrate-db":
        from .migrate_db import migrate_db

        return migrate_db(settings.db_path, args.to, sys.stdout, sys.stderr)
    if args.command in ("usage", "audit", "feedback", "moderation-log", "purge", "installations"):
        print(_report(settings, args))
        return 0
    if args.command in ("run", "doctor"):
        return platform_command(args.command)(settings)
    return 2


COMMANDS_GROUP = "chatbots.commands"
"""Entry points naming the commands that need the platforms (`run`, `doctor`): the outer layer, not the core."""


def platform_command(name: str) -> Callable[[Config], int]:
    """The installed command called name, or a ConfigError saying the platforms are not installed."""
    for entry in entry_points(group=COMMANDS_GROUP, name=name):
        command: Callable[[Config], int] = entry.load()
        return command
    raise ConfigError(f"`chatbots {name}` is not installed: reinstall the chatbots package (entry point "
                      f"{COMMANDS_GROUP}:{name} is missing)")


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure an operator can fix ends in one line on stderr and a non-zero exit, never a traceback."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    load_dotenv(".env", override=False)  # the working directory's .env fills in what the environment leaves unset
    try:
        settings = Config.from_env()
        if getattr(args, "model", None):
            settings = replace(settings, model=args.model)
        configure_logging(settings.log_level, settings.log_format)
        try:
            return _command(settings, args)
        except sqlite3.Error as error:  # wherever a command meets the file: locked, read-only, damaged, disk full
            raise sqlite_error(settings.db_path, error) from None
        except Exception as error:
            if type(error).__module__.split(".")[0] != "psycopg":
                raise
            # The PostgreSQL server went away or refused a statement midway through a command.
            raise StoreError(f"the database at DATABASE_URL failed: {str(error).strip().splitlines()[0]}") from None
    except (ConfigError, StoreError) as error:
        print(f"chatbots: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`chatbots usage | head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
