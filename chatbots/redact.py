"""Optional redaction (CHATBOTS_REDACT) of personal data and secrets before text leaves for the model or is stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+?\d(?:[ ().-]{0,2}\d){8,14}(?!\w)")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
# Every pattern here is linear in the text: no part can rescan what an earlier failed attempt already read.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z ]{0,40}PRIVATE KEY-----")
_PEM_LINES = re.compile(r"(?:\r?\n[A-Za-z0-9+/=]{16,}(?=\r?\n|\Z))*")
_TOKENS = re.compile(
    r"\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bxapp-[A-Za-z0-9-]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    # Only where a run of token characters starts: from inside one, a failed try would read the run again.
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
)


def _private_keys(text: str) -> str:
    """PEM private keys: header to footer, or, with the footer missing, the header and the lines of key after it."""
    out: list[str] = []
    position = 0
    end: re.Match[str] | None = None
    searched_to = -1  # no footer starts before here, from where the last search began
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < position:
            continue  # inside a key already redacted
        if searched_to < begin.end():  # each search starts past the last one's find: linear however many headers
            end = _PEM_END.search(text, begin.end())
            searched_to = end.start() if end is not None else len(text)
        if end is not None:
            stop = end.end()
        else:
            lines = _PEM_LINES.match(text, begin.end())
            stop = lines.end() if lines else begin.end()
        out.append(text[position : begin.start()])
        out.append("[secret]")
        position = stop
    out.append(text[position:])
    return "".join(out)


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
    "keys": lambda text: _TOKENS.sub("[secret]", _private_keys(text)),
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
