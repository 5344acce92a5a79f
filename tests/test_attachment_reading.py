"""Reading shared files: image headers, billed image tokens, the settings, and `chatbots chat --file`."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from chatbots import console
from chatbots.attachments.files import display_name
from chatbots.attachments.images import MAX_JPEG_STEPS, ImageInfo, image_tokens, inspect, sniff
from chatbots.config import Config, ConfigError
from chatbots.engine import Engine
from tests.fakes.model_server import FakeModelServer
from tests.files import png
from tests.test_cli import _chatbots, _env


def jpeg(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, a DHT-like segment (C4, not a frame), then a baseline SOF0 carrying the size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dht = b"\xff\xc4" + struct.pack(">H", 4) + b"\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + dht + sof + b"\xff\xd9"


def test_image_types_and_sizes_come_from_their_headers() -> None:
    found = inspect(png(640, 480))
    assert found is not None and (found.mimetype, found.width, found.height) == ("image/png", 640, 480)
    found = inspect(jpeg(1920, 1080))
    assert found is not None and (found.mimetype, found.width, found.height) == ("image/jpeg", 1920, 1080)
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00" * 10
    found = inspect(gif)
    assert found is not None and (found.mimetype, found.width, found.height) == ("image/gif", 300, 200)
    lossless = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + ((99) | (49 << 14)).to_bytes(4, "little")
    found = inspect(lossless)
    assert found is not None and (found.width, found.height) == (100, 50)
    extended = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (799).to_bytes(3, "little") + (599).to_bytes(3, "little")
    found = inspect(extended)
    assert found is not None and (found.mimetype, found.width, found.height) == ("image/webp", 800, 600)


def test_what_is_not_a_whole_image_is_none() -> None:
    assert sniff(b"%PDF-1.4") is None and inspect(b"hello") is None
    assert inspect(png(10, 10)[:20]) is None, "cut off inside the header"
    assert inspect(b"\xff\xd8\xff\xe0\x00\x01") is None, "a segment length below 2"
    assert inspect(b"\xff\xd8" + b"\xff\xe0\xff\xff" * 10) is None, "segments running off the end"


def test_a_jpeg_header_is_walked_a_bounded_number_of_steps() -> None:
    """Read on the event loop: 10 MB of fill bytes or restart markers must not be walked one by one to the end."""
    frame = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 480, 640)
    exif = b"\xff\xe1" + struct.pack(">H", 65_535) + bytes(65_533)
    assert inspect(b"\xff\xd8" + exif * 40 + b"\xff" * 100 + frame) == ImageInfo("image/jpeg", 640, 480)
    assert inspect(b"\xff\xd8" + b"\xff" * MAX_JPEG_STEPS + frame) is None
    assert inspect(b"\xff\xd8" + b"\xff\xd0" * MAX_JPEG_STEPS + frame) is None


def test_image_tokens_follow_openais_published_examples() -> None:
    # https://platform.openai.com/docs/guides/images-vision?api-mode=chat#calculating-costs
    assert image_tokens("gpt-4o", 1024, 1024) == 765
    assert image_tokens("gpt-4o-2024-08-06", 2048, 4096) == 1105
    assert image_tokens("gpt-4o-mini", 1024, 1024) == 2833 + 4 * 5667
    assert image_tokens("o1", 1024, 1024) == 75 + 4 * 150
    assert image_tokens("gpt-4.1-mini", 1024, 1024) == 1659  # 1024 patches x 1.62
    assert image_tokens("gpt-4.1-nano", 1800, 2400) == 3572  # 1452 patches x 2.46
    assert image_tokens("openai/gpt-4o", 512, 512) == 765, "proxy-style names; small images scale up to 768"
    assert image_tokens("llava:13b", 1024, 1024) == 765, "unknown models are counted like gpt-4o"


def test_a_thin_image_is_never_counted_past_the_2048_square() -> None:
    """A long screenshot or a strip: its short side is not scaled up past what fits 2048 px (1 x 4 tiles, not 2 x 61)."""
    assert image_tokens("gpt-4o", 100, 4000) == 85 + 4 * 170
    assert image_tokens("llava:13b", 768, 2048) == 85 + 8 * 170
    shapes = [(w, h) for w in (1, 50, 300, 768, 1000, 3000, 10000) for h in (1, 50, 300, 768, 1000, 3000, 10000)]
    assert max(image_tokens("llava:13b", w, h) for w, h in shapes) == 1445, "the README's bound for unknown models"


def test_file_names_are_one_plain_line() -> None:
    assert display_name("my_report*final*.pdf") == "my_reportfinal.pdf"
    assert display_name("<!channel>\n`x`.txt") == "!channel x.txt"
    assert display_name("") == "a file"
    assert len(display_name("a" * 500)) == 80


def test_file_settings_are_read_and_checked() -> None:
    config = Config.from_env({"CHATBOTS_FILE_MAX_BYTES": "5000000", "CHATBOTS_FILE_MAX_COUNT": "3",
                              "CHATBOTS_PDF_MAX_PAGES": "9", "CHATBOTS_FILE_MAX_CHARS": "1000",
                              "CHATBOTS_FILE_TIMEOUT": "2.5", "CHATBOTS_VISION": "OFF"})
    assert (config.file_max_bytes, config.file_max_count, config.pdf_max_pages, config.file_max_chars,
            config.file_timeout, config.vision) == (5_000_000, 3, 9, 1000, 2.5, "off")
    defaults = Config.from_env({})
    assert (defaults.file_max_bytes, defaults.file_max_count, defaults.pdf_max_pages, defaults.file_max_chars,
            defaults.file_timeout, defaults.vision) == (10_000_000, 10, 50, 50_000, 30.0, "auto")
    with pytest.raises(ConfigError, match="^CHATBOTS_VISION must be auto, on or off, got 'maybe'$"):
        Config.from_env({"CHATBOTS_VISION": "maybe"})
    with pytest.raises(ConfigError, match="^CHATBOTS_FILE_MAX_BYTES must be a number, got '10MB'$"):
        Config.from_env({"CHATBOTS_FILE_MAX_BYTES": "10MB"})
    with pytest.raises(ConfigError, match="^CHATBOTS_FILE_MAX_COUNT must be at least 1, got '0'$"):
        Config.from_env({"CHATBOTS_FILE_MAX_COUNT": "0"})


async def test_chat_file_shares_files_from_disk(settings: Config, tmp_path: Path) -> None:
    (tmp_path / "diagram.png").write_bytes(png(64, 32))
    (tmp_path / "notes.txt").write_text("remember the milk")
    env = _env(settings)
    code, out, err = await _chatbots("chat", "--file", str(tmp_path / "diagram.png"), "--file", str(tmp_path / "notes.txt"),
                                     "what does this show?", env=env)
    assert code == 0, err
    assert out.strip() == (f"echo: what does this show? [File: diagram.png] [image image/png, {len(png(64, 32))} bytes] "
                           "[File: notes.txt]\nremember the milk")
    code, out, err = await _chatbots("chat", "--file", str(tmp_path / "missing.pdf"), "hi", env=env)
    assert (code, out, err.strip()) == (2, "", f"chatbots chat: no file at {tmp_path / 'missing.pdf'}")


async def test_chat_file_keeps_the_size_limit(
    make_engine: Callable[..., Engine], model_server: FakeModelServer, tmp_path: Path
) -> None:
    engine = make_engine(file_max_bytes=100)
    (tmp_path / "big.txt").write_text("x" * 101)
    out = io.StringIO()
    files = [console.local_file(str(tmp_path / "big.txt"))]
    assert await console.chat(engine, new=True, prompt="", stdin=io.StringIO(""), out=out, files=files) == 0
    assert "_I couldn't read big.txt: it is over the 100 bytes limit per file (`CHATBOTS_FILE_MAX_BYTES`)._" in out.getvalue()
