"""Show an answer in a Slack thread: native streaming where the workspace has it, else post and update."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient

from chatbots.failure_log import FailureLog
from chatbots.failures import FailureKind
from chatbots.paging import FENCE, FILLER, open_fence

from ..streaming import ThrottledReply
from .errors import IncompleteResponse, report, required
from .feedback import feedback_blocks
from .mrkdwn import MrkdwnPages
from .safe_markdown import GuardState, guard

log = logging.getLogger(__name__)

TEXT_LIMIT = 3_900
"""Characters per posted message: Slack shows up to 4,000 before it truncates the text."""
STREAM_LIMIT = 11_000
"""Characters per streamed message; each streaming call takes at most 12,000."""
MIN_ROOM = 64
"""Less room than this left in a streamed message: start the next one."""
THINKING = "is thinking…"
MARKDOWN_BLOCK_LIMIT = 12_000
"""Characters of Markdown one message's markdown blocks may hold in all."""
SECTION_LIMIT = 3_000
"""Characters of mrkdwn one section block's text may hold."""


class ContextOnly:
    """A Reply for messages stored as context: nothing is shown."""

    async def start(self) -> None: ...
    async def append(self, text: str) -> None: ...
    async def finish(self) -> list[str]:
        return []
    async def fail(self, notice: str) -> list[str]:
        return []


@dataclass
class WorkspaceFeatures:
    """What a workspace turned out to support, learned from the first refusal and remembered."""

    streaming: dict[str, bool] = field(default_factory=dict)
    status: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SlackTarget:
    team_id: str
    channel: str
    thread_ts: str
    user_id: str


class SlackReply(ThrottledReply):
    def __init__(self, client: AsyncWebClient, target: SlackTarget, features: WorkspaceFeatures, interval: float = 1.0,
                 failures: FailureLog | None = None, *, feedback: bool = True) -> None:
        super().__init__()
        self.feedback = feedback
        """Put Slack's feedback buttons under the final message of an answer (not under a failure notice)."""
        self.client = client
        self.target = target
        self.features = features
        self.interval = interval
        self.failures = failures or FailureLog()
        self._streaming = features.streaming.get(target.team_id, True)
        # streaming state
        self._stream_ts: str | None = None
        self._sent = 0  # characters of the answer already streamed
        self._part = ""  # text of the current streamed message
        self._guard = GuardState()
        # post-and-update state
        self._pages: MrkdwnPages | None = None
        self._posted: list[str] = []
        self._shown: list[str] = []
        self._settled = 0  # leading messages posted with their final text
        self._ids: list[str] = []
        self._calling = "chat.postMessage"
        """The Web API method called last, named when it fails."""

    def message_ids(self) -> list[str]:
        return list(self._ids)

    async def fail(self, notice: str) -> list[str]:
        self.feedback = False
        return await super().fail(notice)

    def _final_blocks(self) -> list[dict[str, object]] | None:
        return feedback_blocks() if self.feedback else None

    async def _thinking(self) -> None:
        if not self.features.status.get(self.target.team_id, True):
            return
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=self.target.channel, thread_ts=self.target.thread_ts, status=THINKING
            )
        except SlackApiError as error:
            self.features.status[self.target.team_id] = False
            if report(self.failures, "assistant.threads.setStatus", error, self.target.channel) is FailureKind.PLATFORM_ERROR:
                log.info("thinking status unavailable in this workspace (%s)", error.response.get("error"))

    async def _render(self, text: str, final: bool) -> bool:
        try:
            return await self._render_any(text, final)
        except (SlackApiError, IncompleteResponse) as error:
            report(self.failures, self._calling, error, self.target.channel)
            raise

    async def _render_any(self, text: str, final: bool) -> bool:
        if self._streaming:
            try:
                return await self._render_stream(text, final)
            except (SlackApiError, IncompleteResponse) as error:
                if self._stream_ts is not None or self._ids:
                    raise
                # Streaming failed before anything showed: post instead, and remember a refusal (not a 429/5xx), or
                # an answer the stream cannot go on from.
                if isinstance(error, IncompleteResponse):
                    report(self.failures, error.method, error, self.target.channel)
                    self.features.streaming[self.target.team_id] = False
                elif error.response.status_code == 200:
                    self.features.streaming[self.target.team_id] = False
                self._streaming = False
                log.info("native streaming unavailable (%s); posting and updating instead",
                         error.field if isinstance(error, IncompleteResponse) else error.response.get("error"))
        await self._render_updates(text, final)
        return True

    # -- native streaming: chat.startStream / appendStream / stopStream, Markdown made safe (safe_markdown) --

    async def _render_stream(self, text: str, final: bool) -> bool:
        """Stream what is new; returns False when there was nothing whole to show yet."""
        start, stop = self._sent, len(text)
        if not final:
            # Hold back a half-written word, so a message boundary can never fall inside one.
            stop = max(text.rfind(" ", start), text.rfind("\n", start)) + 1
            if stop <= start:
                return bool(self._ids)
        while start < stop:
            room = STREAM_LIMIT - len(self._part)
            if room < MIN_ROOM:
                await self._next_stream_part()
                continue
            end, markdown, state = self._next_piece(text, start, stop, room)
            if end == stop and final and self._stream_ts is not None:
                # The last words ride on the stop call itself: one call fewer per reply.
                self._calling = "chat.stopStream"
                await self.client.chat_stopStream(channel=self.target.channel, ts=self._stream_ts, markdown_text=markdown,
                                                  blocks=self._final_blocks())
                self._sent, self._guard, self._stream_ts = end, state, None
                return True
            await self._stream_out(markdown)
            self._sent, self._guard, start = end, state, end
            if end < stop:
                await self._next_stream_part()
        if final and self._stream_ts is not None:
            self._calling = "chat.stopStream"
            await self.client.chat_stopStream(channel=self.target.channel, ts=self._stream_ts, blocks=self._final_blocks())
            self._stream_ts = None
        elif final and not self._ids:
            await self._render_updates(text, final)  # an empty answer: post the (empty-answer) notice plainly
        return True

    def _next_piece(self, text: str, start: int, stop: int, room: int) -> tuple[int, str, GuardState]:
        """The next piece of text[start:stop] that fits in room once made safe: (its end, its Markdown, state)."""
        budget = room
        while True:
            end = stop
            if stop - start > budget:
                end = max(text.rfind(" ", start, start + budget), text.rfind("\n", start, start + budget)) + 1
                if end <= start:
                    end = start + budget
            markdown, state = guard(text, start, end, self._guard)
            if len(markdown) <= room:
                return end, markdown, state
            budget = room // 2  # each break adds one character at most, so half the room always fits

    async def _stream_out(self, markdown: str) -> None:
        if not markdown:
            return
        if self._stream_ts is None:
            self._calling = "chat.startStream"
            response = await self.client.chat_startStream(
                channel=self.target.channel,
                thread_ts=self.target.thread_ts,
                recipient_team_id=self.target.team_id,
                recipient_user_id=self.target.user_id,
                markdown_text=markdown,
            )
            self._stream_ts = required(response, "chat.startStream")
            self._ids.append(self._stream_ts)
        else:
            self._calling = "chat.appendStream"
            await self.client.chat_appendStream(channel=self.target.channel, ts=self._stream_ts, markdown_text=markdown)
        self._part += markdown

    async def _next_stream_part(self) -> None:
        """Close the current streamed message (and any open code block in it) and start the next one."""
        fence = open_fence(self._part)
        if fence:
            await self._stream_out(f"\n{FENCE}")
        assert self._stream_ts is not None
        self._calling = "chat.stopStream"
        await self.client.chat_stopStream(channel=self.target.channel, ts=self._stream_ts)
        self._stream_ts, self._part = None, ""
        if fence:
            await self._stream_out(f"{fence}\n")

    # -- post and update: chat.postMessage, then chat.update, in mrkdwn --

    async def _render_updates(self, text: str, final: bool) -> None:
        if self._pages is None:
            self._pages = MrkdwnPages(TEXT_LIMIT)
        parts = self._pages.messages(text, at_least=len(self._posted)) or ([FILLER] if final else [])
        for index in range(self._settled, len(parts)):
            part = parts[index]
            if index < len(self._posted):
                if part != self._shown[index]:
                    await self._update(index, part, final)
            else:
                ts = required(await self._post(part), "chat.postMessage")
                self._posted.append(ts)
                self._shown.append(part)
                self._ids.append(ts)
        while self._settled < min(self._pages.finished, len(self._shown)) and self._shown[self._settled] == parts[self._settled]:
            self._settled += 1
        if final and self._posted:
            await self._finish_with_blocks(text)

    async def _finish_with_blocks(self, text: str) -> None:
        """The final message shown through blocks: an answer that fits one message as Slack's own Markdown (a
        markdown block, made safe like streamed text); a longer one keeps its mrkdwn pages, the last in section
        blocks. Either way the feedback buttons go underneath. Failing this only loses the nicer rendering."""
        last = len(self._posted) - 1
        markdown, _ = guard(text, 0, len(text), GuardState())
        blocks: list[dict[str, object]]
        if last == 0 and text.strip() and len(markdown) <= MARKDOWN_BLOCK_LIMIT:
            blocks = [{"type": "markdown", "text": markdown}]
        elif self.feedback:
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": piece}} for piece in _sections(self._shown[last])]
        else:
            return
        blocks += self._final_blocks() or []
        try:
            self._calling = "chat.update"
            await self.client.chat_update(channel=self.target.channel, ts=self._posted[last], text=self._shown[last],
                                          blocks=blocks)
        except SlackApiError as error:
            report(self.failures, "chat.update", error, self.target.channel)

    async def _post(self, part: str) -> AsyncSlackResponse:
        # No previews: Slack would fetch whatever address the model wrote.
        self._calling = "chat.postMessage"
        return await self.client.chat_postMessage(
            channel=self.target.channel, thread_ts=self.target.thread_ts, text=part, unfurl_links=False, unfurl_media=False
        )

    async def _update(self, index: int, part: str, final: bool) -> None:
        try:
            self._calling = "chat.update"
            await self.client.chat_update(channel=self.target.channel, ts=self._posted[index], text=part)
            self._shown[index] = part
        except SlackApiError:
            if not final:
                raise
            # The last word must land: post the final text as a new message rather than lose it.
            ts = required(await self._post(part), "chat.postMessage")
            self._posted[index], self._shown[index] = ts, part
            self._ids.append(ts)



def _sections(text: str) -> list[str]:
    """mrkdwn cut into section-sized pieces, at line ends where it can be."""
    pieces = []
    while len(text) > SECTION_LIMIT:
        cut = text.rfind("\n", 0, SECTION_LIMIT) + 1 or SECTION_LIMIT
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces or [FILLER]
