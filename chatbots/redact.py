"""Optional redaction (CHATBOTS_REDACT) of personal data and secrets before text leaves for the model or is stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+?\d(?:[ ().-]{0,2}\d){8,14}(?!\w)")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_KEYS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bxapp-[A-Za-z0-9-]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    re.DOTALL,
)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)

    return _CARD.sub(replace, text)


_REDACTORS: dict[str, Callable[[str], str]] = {
    # Order matters: keys and cards first, so their digits are not mistaken for phone numbers.
    "keys": lambda text: _KEYS.sub("[secret]", text),
    "cards": _cards,
    "emails": lambda text: _EMAIL.sub("[email]", text),
    "phones": lambda text: _PHONE.sub("[phone]", text),
}


def redactor(kinds: Iterable[str]) -> Callable[[str], str] | None:
    """A function that replaces the chosen kinds of data with placeholders, or None when nothing is chosen."""
    chosen = [_REDACTORS[kind] for kind in _REDACTORS if kind in set(kinds)]
    if not chosen:
        return None

    def redact(text: str) -> str:
        for step in chosen:
            text = step(text)
        return text

    return redact
