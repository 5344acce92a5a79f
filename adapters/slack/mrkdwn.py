"""Markdown (what models write) to Slack mrkdwn (what chat.postMessage's text renders)."""

from __future__ import annotations

import re

_CODE_BLOCK = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BARE_ANGLE_URL = re.compile(r"<(https?://[^>\s]+)>")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?=\S)", re.MULTILINE)
_RULE = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert the Markdown a model writes. Code is kept verbatim; half-written markup (mid-stream) stays as typed."""
    protected: list[str] = []

    def keep(text: str) -> str:
        protected.append(text)
        return f"\x00{len(protected) - 1}\x00"

    text = _CODE_BLOCK.sub(lambda m: keep("```\n" + escape(m.group(1).rstrip("\n")) + "\n```"), markdown)
    text = _INLINE_CODE.sub(lambda m: keep(escape(m.group(0))), text)
    text = _LINK.sub(lambda m: keep(f"<{m.group(2)}|{escape(m.group(1)).replace('|', '¦')}>"), text)
    text = _BARE_ANGLE_URL.sub(lambda m: keep(f"<{m.group(1)}>"), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: keep(f"*{m.group(1).strip('*')}*"), text)
    text = _RULE.sub("──────────", text)
    text = _BOLD.sub(lambda m: keep(f"*{m.group(2)}*"), text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    while "\x00" in text:
        text = re.sub(r"\x00(\d+)\x00", lambda m: protected[int(m.group(1))], text)
    return text
