"""The README's deployment recipes, run as far as this machine can: no Heroku, no Docker engine, no systemd.

- Buildpack: the Python buildpack's steps on a copy of what `git push` sends: detect the app by its files, read
  `.python-version`, `pip install -r requirements.txt` into a fresh virtualenv outside the app (as the buildpack's
  Python lives in /app/.heroku), move the app to where it runs (the build folder is not /app), then the Procfile's
  `release` command against a throw-away SQLite file and PostgreSQL database, and its `web` command.
- Container: the Dockerfile read instruction by instruction: its RUN steps into a fresh virtualenv standing in for
  the image's, then its command started with its ENV as an unprivileged user, checked with its own HEALTHCHECK.
- compose.yaml and the systemd unit: read and checked against what the bot does (and `systemd-analyze verify`,
  where the machine has it).

Both virtualenvs reuse pip's cache (the real builds pass --no-cache-dir; that only changes where wheels come from),
and are built at once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
import yaml

from adapters.runner import SHUTDOWN_GRACE
from chatbots.migrations import migrations
from chatbots.store.pg_schema import MIGRATIONS
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import FakeSlack, app_mention, event_callback, next_ts, post_signed
from tests.postgres import SERVER_URL, _with_database
from tests.processes import free_port, wait_healthy

REPO = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "deployment-signing-secret"
PIP_OPTIONS = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--quiet", "--no-compile"]
"""The buildpack's, quieter, and without compiling bytecode (which saves a third of the time and changes nothing)."""
pytestmark = pytest.mark.timeout(240)  # the builds' time counts towards the first test that needs them
NOBODY = 65534
"""The unprivileged user the image's command runs as here (the image makes its own; this machine has nobody)."""


def tracked_files(into: Path) -> None:
    """What `git push` sends: the tracked files, as they are in the working tree."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        if (REPO / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, into / name)


def python_version_file(text: str) -> str:
    """`.python-version` read the way the Python buildpack reads it: one N.N or N.N.N line; # lines are comments."""
    lines = [line for line in text.splitlines() if not re.fullmatch(r"\s*(#.*)?", line)]
    assert len(lines) == 1, f".python-version must name exactly one version, not {lines}"
    found = re.fullmatch(r"\s*((0|[1-9]\d*)\.(0|[1-9]\d*)(\.(0|[1-9]\d*))?)\s*", lines[0])
    assert found, f".python-version: {lines[0]!r} is not N.N or N.N.N"
    return found.group(1)


def run_env(bin_dir: Path, **env: str) -> dict[str, str]:
    """A process environment with only the basics and env, the virtualenv's commands first on PATH."""
    basics = {name: os.environ[name] for name in ("HOME", "LANG", "LC_ALL") if name in os.environ}
    return {**basics, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}


def throwaway_database(suffix: str) -> Iterator[str]:
    name = f"chatbots_deploy_{os.getpid()}_{suffix}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(SERVER_URL, name)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A throw-away PostgreSQL database with no schema (postgres_url makes CI fail when there is no server)."""
    yield from throwaway_database("release")


@dataclass
class Slug:
    """A built app: the virtualenv the buildpack installed into, and the app where it runs."""

    bin: Path
    app: Path


def build_slug(root: Path) -> Slug:
    """The Python buildpack's build, step by step, on what `git push heroku` sends."""
    build = root / "build_0a1b2c"
    build.mkdir()
    tracked_files(build)

    # Detect: the buildpack recognises an app by one package manager's file at its root.
    managers = [name for name in ("requirements.txt", "Pipfile.lock", "Pipfile", "poetry.lock", "uv.lock")
                if (build / name).is_file()]
    assert managers == ["requirements.txt"], "exactly one package manager file, so the buildpack uses pip"
    version = python_version_file((build / ".python-version").read_text())
    assert version == "%d.%d" % sys.version_info[:2], "the build uses the Python .python-version names"

    python = root / "python"  # the buildpack's Python lives outside the app (/app/.heroku/python)
    subprocess.run([sys.executable, "-m", "venv", str(python)], check=True)
    subprocess.run([python / "bin" / "pip", "install", *PIP_OPTIONS, "-r", "requirements.txt"], cwd=build, check=True)

    app = root / "app"  # built in /tmp/build_..., run from /app
    build.rename(app)
    return Slug(python / "bin", app)


def test_python_version_file_names_a_python_the_package_supports() -> None:
    version = python_version_file((REPO / ".python-version").read_text())
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and tuple(map(int, version.split("."))) >= (3, 11)
    assert re.search(rf"^FROM python:{re.escape(version)}-slim$", (REPO / "Dockerfile").read_text(), re.M), \
        "the image uses the same Python as the buildpack"


def procfile() -> dict[str, str]:
    entries = [line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip()]
    return {kind.strip(): command.strip() for kind, command in entries}


async def process(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_buildpack_build_runs_and_its_release_step_migrates_sqlite_and_postgresql(
    slug: Slug, postgres_database: str, tmp_path: Path
) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert await process(["chatbots", "--version"], run_env(slug.bin), slug.app) == (0, f"chatbots {version}\n", "")
    release = shlex.split(procfile()["release"])
    assert release == ["chatbots", "migrate"]

    sqlite = run_env(slug.bin, CHATBOTS_DB=str(tmp_path / "release.db"))
    code, out, err = await process(release, sqlite, slug.app)
    assert code == 0 and out.startswith(f"{tmp_path / 'release.db'}: applied m001_initial"), err
    assert (await process(release, sqlite, slug.app))[1].endswith(f"up to date ({len(migrations._migrations)} migrations applied)\n")

    heroku = run_env(slug.bin, DATABASE_URL=postgres_database.replace("postgresql://", "postgres://", 1))
    code, out, err = await process(release, heroku, slug.app)
    assert code == 0 and ": applied m001_initial" in out, err
    code, out, _ = await process(release, heroku, slug.app)
    assert code == 0 and out.endswith(f"up to date ({len(MIGRATIONS)} migrations applied)\n")
    with psycopg.connect(postgres_database) as conn:
        assert conn.execute("SELECT to_regclass('messages') IS NOT NULL").fetchone() == (True,)


async def test_the_procfiles_web_process_serves_on_port_and_stops_on_sigterm(
    slug: Slug, postgres_database: str
) -> None:
    """Two dynos on one database after the release step: each starts, answers, and stops cleanly."""
    assert procfile()["web"] == "chatbots run"
    async with FakeSlack() as slack, FakeModelServer() as model:
        env = run_env(slug.bin, DATABASE_URL=postgres_database, SLACK_BOT_TOKEN="xoxb-deploy",
                      SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=slack.api_url, OPENAI_BASE_URL=model.base_url)
        assert (await process(shlex.split(procfile()["release"]), env, slug.app))[0] == 0
        ports = [free_port(), free_port()]
        dynos = [await asyncio.create_subprocess_exec(*shlex.split(procfile()["web"]), env={**env, "PORT": str(port)},
                                                      cwd=slug.app, stderr=asyncio.subprocess.PIPE)
                 for port in ports]
        try:
            for dyno, port in zip(dynos, ports):
                await wait_healthy(dyno, port)
            for n, port in enumerate(ports):
                await answers_over_http(slack, port, f"hello dyno {n}")
        finally:
            for dyno in dynos:
                if dyno.returncode is None:
                    dyno.send_signal(signal.SIGTERM)
        for dyno in dynos:
            _, err = await asyncio.wait_for(dyno.communicate(), SHUTDOWN_GRACE + 10)
            assert dyno.returncode == 0 and b"Traceback" not in err


async def answers_over_http(slack: FakeSlack, port: int, question: str) -> None:
    ts = next_ts()
    body = event_callback("T1", app_mention("C1", "U1", f"<@UBOT> {question}", ts=ts))
    status, _ = await post_signed(None, f"http://127.0.0.1:{port}/slack/events", body, SIGNING_SECRET)
    assert status == 200
    await slack.wait_for(lambda: any(m.text == f"echo: {question}" and m.thread_ts == ts for m in slack.messages("C1")),
                         timeout=15, message="the answer in the thread")


# -- the container image --------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    argument: str

    def exec_form(self) -> list[str]:
        """A JSON-array argument (exec form: no shell between Docker and the command, so signals reach it)."""
        value = json.loads(self.argument)
        assert isinstance(value, list) and all(isinstance(part, str) for part in value), self
        return value


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not current and re.fullmatch(r"\s*(#.*)?", line):
            continue
        if line.endswith("\\"):
            current += line[:-1]
            continue
        logical.append(current + line)
        current = ""
    return [Instruction(keyword.upper(), rest.strip()) for keyword, rest in (line.strip().split(None, 1) for line in logical)]


def one(instructions: list[Instruction], keyword: str) -> Instruction:
    [found] = [i for i in instructions if i.keyword == keyword]
    return found


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps path out of the build context (its last matching pattern decides)."""
    ignored = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/"))
               or fnmatch.fnmatchcase(parts[n], pattern.removeprefix("**/")) and pattern.startswith("**/")
               for n, p in enumerate(prefixes)):
            ignored = not negated
    return ignored


def test_the_build_context_leaves_out_secrets_tests_and_local_state() -> None:
    for path in (".env", ".git/config", ".venv/bin/python", "tests/test_slack.py", "chatbots.db", "bench/suite.py",
                 "chatbots/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(path), path
    for path in ("pyproject.toml", "README.md", "chatbots/cli.py", "adapters/runner.py", "adapters/slack/manifests/http-mode.json"):
        assert not dockerignored(path), path


def runs_for_everyone(path: Path) -> bool:
    """Whether any user may run path: it and every folder above it are open to others."""
    real = path.resolve()
    return all(part.stat().st_mode & 0o001 for part in (real, *real.parents))


def interpreter_for_everyone() -> str:
    """This Python version, installed where an unprivileged user can run it (a pyenv under /root is not)."""
    version = "%d.%d" % sys.version_info[:2]
    for candidate in (sys.executable, shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and runs_for_everyone(Path(candidate)):
            return candidate
    raise AssertionError(f"no Python {version} on this machine that an unprivileged user may run")


class Image:
    """The image's filesystem as a folder: absolute paths in the Dockerfile land under root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        self.workdir = "/"
        self.user = "root"
        self.uid = 0

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def host_value(self, value: str) -> str:
        """An ENV value with the image's absolute paths mapped under root (the system's own stay as they are)."""
        return ":".join(str(self.path(p)) if p.startswith(("/opt/", "/data", "/tmp/")) else p for p in value.split(":"))

    def set_env(self, argument: str) -> None:
        for pair in shlex.split(argument):
            name, value = pair.split("=", 1)
            self.env[name] = value.replace("$PATH", self.env["PATH"])

    def copy(self, argument: str) -> None:
        *sources, target = shlex.split(argument)
        for source in sources:
            assert not dockerignored(source), f"COPY {source}: .dockerignore leaves it out of the context"
            into = self.path(target)
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, into, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, into / source)

    def run(self, argument: str) -> None:
        """Each `&&` step of a RUN, as this machine can: builds for real, users and owners mapped to nobody."""
        for step in (shlex.split(part) for part in argument.split("&&")):
            if step[:3] == ["python", "-m", "venv"]:
                subprocess.run([interpreter_for_everyone(), "-m", "venv", str(self.path(step[3]))], check=True)
            elif len(step) > 2 and step[0].endswith("/pip") and step[1] == "install":
                arguments = [self.host_value(a) if a.startswith("/") else a for a in step[2:] if a != "--no-cache-dir"]
                subprocess.run([self.host_value(step[0]), "install", *PIP_OPTIONS, *arguments], check=True)
            elif step[:2] == ["rm", "-rf"]:
                for target in step[2:]:
                    shutil.rmtree(self.path(target))
            elif step[0] == "useradd":
                assert "--system" in step and int(step[step.index("--uid") + 1]) > 0, "a system user, not root"
                self.uid = int(step[step.index("--uid") + 1])
            elif step[0] == "mkdir":
                self.path(step[-1]).mkdir(parents=True)
            elif step[0] == "chown":
                os.chown(self.path(step[-1]), NOBODY, NOBODY)
            else:
                raise AssertionError(f"this test does not know how to run `{shlex.join(step)}`: teach Image.run")


def build_image(root: Path) -> tuple[Image, list[Instruction]]:
    """The Dockerfile's instructions up to its command, carried out in root (a folder every user may read)."""
    built = Image(root)
    built.path("/tmp").mkdir()
    built.path("/tmp").chmod(0o1777)
    instructions = dockerfile()
    for instruction in instructions:
        if instruction.keyword == "ENV":
            built.set_env(instruction.argument)
        elif instruction.keyword == "COPY":
            built.copy(instruction.argument)
        elif instruction.keyword == "RUN":
            built.run(instruction.argument)
        elif instruction.keyword == "WORKDIR":
            built.workdir = instruction.argument
        elif instruction.keyword == "USER":
            built.user = instruction.argument
    return built, instructions


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slug, tuple[Image, list[Instruction]]]]:
    """Both builds at once (each mostly waits on pip), so the module costs one build's time."""
    image_root = Path(tempfile.mkdtemp(prefix="chatbots-image-"))
    image_root.chmod(0o755)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            heroku = pool.submit(build_slug, tmp_path_factory.mktemp("heroku"))
            docker = pool.submit(build_image, image_root)
            yield heroku.result(), docker.result()
    finally:
        shutil.rmtree(image_root)


@pytest.fixture(scope="module")
def slug(builds: tuple[Slug, tuple[Image, list[Instruction]]]) -> Slug:
    return builds[0]


@pytest.fixture(scope="module")
def image(builds: tuple[Slug, tuple[Image, list[Instruction]]]) -> tuple[Image, list[Instruction]]:
    return builds[1]


def test_the_image_is_slim_runs_unprivileged_and_keeps_sqlite_on_a_volume(image: tuple[Image, list[Instruction]]) -> None:
    built, instructions = image
    assert instructions[0].keyword == "FROM" and instructions[0].argument.endswith("-slim")
    assert built.user == f"{built.uid}:{built.uid}" and built.uid != 0, "USER is the user RUN made, by number"
    users = [i for i in instructions if i.keyword == "USER"]
    assert instructions.index(users[-1]) < instructions.index(one(instructions, "ENTRYPOINT"))
    [volume] = one(instructions, "VOLUME").exec_form()
    assert built.env["CHATBOTS_DB"].startswith(volume + "/") and built.workdir == volume
    assert one(instructions, "ENTRYPOINT").exec_form() == ["chatbots"], "`docker run IMAGE doctor` runs any command"
    assert one(instructions, "CMD").exec_form() == ["run"]
    assert built.env["CHATBOTS_DB"] == "/data/chatbots.db" and built.env["PORT"] == "8080"
    assert one(instructions, "STOPSIGNAL").argument == "SIGTERM"
    assert one(instructions, "EXPOSE").argument == built.env["PORT"]
    assert not built.path("/tmp/chatbots").exists(), "the source is gone once installed"


async def test_the_images_command_starts_as_an_unprivileged_user_and_passes_its_own_health_check(
    image: tuple[Image, list[Instruction]]
) -> None:
    built, instructions = image
    command = one(instructions, "ENTRYPOINT").exec_form() + one(instructions, "CMD").exec_form()
    health = one(instructions, "HEALTHCHECK").argument
    options, _, check = health.partition("CMD ")
    assert "--interval" in options and "--timeout" in options
    check_command = json.loads(check)
    assert check_command[0] == "python" and "/healthz" in check_command[-1], "no curl in a slim image"
    async with FakeSlack() as slack, FakeModelServer() as model:
        port = free_port()
        env = {**{name: built.host_value(value) for name, value in built.env.items()},
               "PORT": str(port), "TMPDIR": str(built.path("/tmp")),  # PORT: a free one on this shared machine
               "SLACK_BOT_TOKEN": "xoxb-image", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.api_url, "OPENAI_BASE_URL": model.base_url}
        user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
        cwd = built.path(built.workdir)

        async def health_check() -> int:
            checking = await asyncio.create_subprocess_exec(*check_command, env=env, cwd=cwd, **user,  # type: ignore[arg-type]
                                                            stderr=asyncio.subprocess.DEVNULL)
            return await asyncio.wait_for(checking.wait(), 10)

        bot = await asyncio.create_subprocess_exec(*command, env=env, cwd=cwd, stderr=asyncio.subprocess.PIPE,
                                                   **user)  # type: ignore[arg-type]
        try:
            await wait_healthy(bot, port)
            assert await health_check() == 0
            await answers_over_http(slack, port, "hello from the image")
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(bot.communicate(), SHUTDOWN_GRACE + 10)
        assert bot.returncode == 0 and b"Traceback" not in err
        assert await health_check() != 0, "the check fails once the bot is gone"
    database = Path(env["CHATBOTS_DB"])
    assert database.is_file() and database.stat().st_uid == (NOBODY if user else os.geteuid())


# -- compose.yaml and the systemd unit ------------------------------------------------------------------------


def test_compose_runs_postgresql_a_migrate_step_and_two_replicas_after_it() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    db, migrate, bot = services["db"], services["migrate"], services["bot"]
    assert db["image"].startswith("postgres:") and "healthcheck" in db
    assert migrate["command"] == ["migrate"] and migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert bot["command"] == ["run"] and bot["deploy"]["replicas"] == 2
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["build"] == bot["build"] == "." and migrate["env_file"] == bot["env_file"] == ".env"
    assert bot["stop_grace_period"] == "30s" and 30 > SHUTDOWN_GRACE, "Docker's stop timeout outlasts the bot's drain"
    assert "PORT" not in bot["environment"] and "ports" not in bot, "the image's 8080, published nowhere"
    url = bot["environment"]["DATABASE_URL"]
    assert url == migrate["environment"]["DATABASE_URL"]
    env = db["environment"]
    expected = f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    assert url == expected, "the bots use the database the db service creates"
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), "no default password: compose stops without one"


def systemd_unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / "chatbots.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            name, value = line.split("=", 1)
            current.setdefault(name, []).append(value)
    return sections


def test_the_systemd_unit_restarts_on_failure_and_outwaits_the_graceful_stop(slug: Slug, tmp_path: Path) -> None:
    service = systemd_unit()["Service"]
    assert service["User"] == ["chatbots"] and service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/chatbots/chatbots.env"]
    assert service["KillSignal"] == ["SIGTERM"] and service["TimeoutStopSec"] == ["30"] and 30 > SHUTDOWN_GRACE
    [start] = service["ExecStart"]
    assert shlex.split(start) == ["/opt/chatbots/bin/chatbots", "run"]
    assert f"CHATBOTS_DB=/var/lib/{service['StateDirectory'][0]}/chatbots.db" in service["Environment"]
    if shutil.which("systemd-analyze"):  # systemd checks every key, with the command pointed at an installed bot
        unit = tmp_path / "chatbots.service"
        unit.write_text((REPO / "deploy" / "chatbots.service").read_text().replace(start.split()[0], str(slug.bin / "chatbots")))
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
