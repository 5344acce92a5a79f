"""Shared files: the time they add before the first text, and the bot's memory while many are read at once.

A message carries a 1 MB PNG (random pixels, so it does not compress) and a 20-page PDF with text. Both are
downloaded over HTTP from a server on 127.0.0.1 by the adapters' own Downloader (streamed, with the byte limit), read (image
header, base64; PDF text with pypdf on a worker thread), stored, and sent to the fake model server as content parts.

- added time to first text: event -> first text for that message, minus the same for a text-only message (median
  of --repeats sequential turns, each in a new conversation); the model answers at once.
- peak RSS: the bot process's high-water mark (VmHWM) while --burst such messages are answered at once, each in
  its own conversation; target <= 150 MiB. The bot runs in a child process, so the servers' memory is not counted.

    python -m bench.attachments [--repeats 7] [--burst 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.model_server import FakeModelServer
from tests.files import pdf

IMAGE_SIDE = 1024
PAGES = 20
TARGET_RSS_MIB = 150


def random_png(side: int) -> bytes:
    """A real grayscale PNG of random pixels: about side * side bytes, as photos and screenshots barely compress."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + os.urandom(side) for _ in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def report_pdf(pages: int) -> bytes:
    line = "Quarterly figures for the region, with revenue, costs and the margin for each product line."
    return pdf(["\n".join(f"{page}.{n} {line}" for n in range(20)) for page in range(pages)])


# -- the bot's side, in its own process --

async def worker(model_url: str, files_url: str, repeats: int, burst: int) -> dict[str, Any]:
    from chatbots.config import Config
    from chatbots.engine import Engine
    from chatbots.model import OpenAIChat
    from chatbots.store import Store
    from chatbots.types import ConversationKey, Inbound, SharedFile

    from adapters.downloads import Downloader, FileHosts

    # The platforms' own download path: the file server stands where SLACK_API_URL / DISCORD_API_URL would point.
    downloads = Downloader(FileHosts.of("Bench", (), files_url))

    def remote(name: str, mimetype: str) -> SharedFile:
        return downloads.file(name, mimetype, None, f"{files_url}/{name}")

    class FirstText:
        def __init__(self) -> None:
            self.at: float | None = None
            self.text = ""

        async def start(self) -> None: ...

        async def append(self, text: str) -> None:
            if self.at is None:
                self.at = time.perf_counter()
            self.text += text

        async def finish(self) -> list[str]:
            return ["r"]

        async def fail(self, notice: str) -> list[str]:
            raise AssertionError(notice)

    tmp = tempfile.mkdtemp()
    settings = Config(openai_api_key="sk-bench", openai_base_url=model_url, db_path=f"{tmp}/bench.db", model="gpt-4o",
                      moderation=False, stall_timeout=30.0)
    engine = Engine(Store.open(settings.db_path), OpenAIChat.from_settings(settings), settings)
    files = (remote("photo.png", "image/png"), remote("report.pdf", "application/pdf"))
    sequence = 0

    async def turn(with_files: bool) -> float:
        nonlocal sequence
        sequence += 1
        key = ConversationKey("bench", "T1", "C1", f"t{sequence}")
        reply = FirstText()
        started = time.perf_counter()
        message = Inbound(key, f"m{sequence}", "U1", "Ada", "what do these show?", files=files if with_files else ())
        result = await engine.handle(message, reply)
        assert result.status == "answered" and reply.at is not None, result
        assert not with_files or "_I" not in reply.text, reply.text  # no notes: both files were read
        return (reply.at - started) * 1000

    await turn(True)  # warm up: pypdf's import, the connections
    plain = [await turn(False) for _ in range(repeats)]
    shared = [await turn(True) for _ in range(repeats)]
    before = _status_mib("VmRSS:")
    await asyncio.gather(*(turn(True) for _ in range(burst)))
    peak = _status_mib("VmHWM:")
    await engine.close()
    await downloads.close()
    return {"plain_ms": statistics.median(plain), "shared_ms": statistics.median(shared),
            "rss_before_burst_mib": before, "peak_rss_mib": peak}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return round(int(line.split()[1]) / 1024, 1)
    raise LookupError(field)


# -- the bench: servers here, the bot in a child process --

async def main(repeats: int, burst: int) -> dict[str, Any]:
    image, report = random_png(IMAGE_SIDE), report_pdf(PAGES)
    app = web.Application()
    served = {"photo.png": (image, "image/png"), "report.pdf": (report, "application/pdf")}

    async def serve(request: web.Request) -> web.Response:
        data, mimetype = served[request.match_info["name"]]
        return web.Response(body=data, content_type=mimetype)

    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with FakeModelServer(answer_tokens=20) as model:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.attachments", "--worker", model.base_url, f"http://127.0.0.1:{port}",
            str(repeats), str(burst), stdout=subprocess.PIPE,
        )
        out, _ = await process.communicate()
    await runner.cleanup()
    if process.returncode:
        raise SystemExit(f"the bot process failed ({process.returncode})")
    measured = json.loads(out)
    measured.update(image_bytes=len(image), pdf_bytes=len(report), pages=PAGES, burst=burst, repeats=repeats)
    return measured


def report(measured: dict[str, Any]) -> str:
    added = measured["shared_ms"] - measured["plain_ms"]
    peak = measured["peak_rss_mib"]
    rows = [
        ("message with a %.1f MB PNG and a %d-page PDF: added time to first text, median ms"
         % (measured["image_bytes"] / 1e6, measured["pages"]), f"{added:.1f}", "-", "info"),
        ("  time to first text with / without the files, ms", f"{measured['shared_ms']:.1f} / {measured['plain_ms']:.1f}",
         "-", "info"),
        (f"{measured['burst']} such messages at once: peak RSS MiB (before the burst)",
         f"{peak} ({measured['rss_before_burst_mib']})", f"<= {TARGET_RSS_MIB}",
         "pass" if peak <= TARGET_RSS_MIB else "FAIL"),
    ]
    lines = ["| measure | value | target | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        model_url, files_url, repeats, burst = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(asyncio.run(worker(model_url, files_url, repeats, burst))))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--repeats", type=int, default=7)
        parser.add_argument("--burst", type=int, default=20)
        args = parser.parse_args()
        print(report(asyncio.run(main(args.repeats, args.burst))))
