"""Files people share, through the real engine and the real HTTP fake model server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from chatbots.attachments.images import image_tokens
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.store import Store
from chatbots.types import Addressed, ConversationKey, Inbound, SharedFile, TurnStatus
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.files import Served, failing, pdf, png, shared

KEY = ConversationKey("test", "T1", "C1", "thread-1")
IMAGE = png(1024, 1024)
REPORT = pdf(["Quarterly report", "Revenue grew 12 percent in Q3.\nCosts fell."])


def said(text: str, *files: SharedFile, n: int = 1, key: ConversationKey = KEY) -> Inbound:
    return Inbound(key, f"m{n}", "U1", "Ada", text, Addressed.YES, files=files)


def last_user(model_server: FakeModelServer, request: int = -1) -> Any:
    return model_server.requests[request]["messages"][-1]["content"]


def data_url(data: bytes, mimetype: str = "image/png") -> str:
    return f"data:{mimetype};base64,{base64.b64encode(data).decode()}"


async def ask(engine: Engine, message: Inbound) -> RecordingReply:
    reply = RecordingReply()
    result = await engine.handle(message, reply)
    assert result.status == TurnStatus.ANSWERED, (result, reply.notice)
    return reply


# -- what the model reads --

async def test_an_image_goes_to_the_model_as_a_data_url_after_the_text(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("what does this show?", shared("diagram.png", IMAGE, "image/png")))
    assert last_user(model_server) == [
        {"type": "text", "text": "what does this show?"},
        {"type": "text", "text": "[File: diagram.png]"},
        {"type": "image_url", "image_url": {"url": data_url(IMAGE)}},
    ]
    assert reply.text == "echo: what does this show? [File: diagram.png] [image image/png, 1097 bytes]"
    assert reply.started == 1, "the thinking status went up once, before the download"


async def test_image_tokens_are_counted_the_way_the_provider_bills_them(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="gpt-4o")
    model_server.queue(usage=False)  # so the engine counts the prompt itself
    with_image = await engine.handle(said("look", shared("shot.png", IMAGE, "image/png")), RecordingReply())
    model_server.queue(usage=False)
    other = ConversationKey("test", "T1", "C1", "thread-2")
    text_only = await engine.handle(said("look", n=2, key=other), RecordingReply())
    assert with_image.usage is not None and text_only.usage is not None
    expected = image_tokens("gpt-4o", 1024, 1024) + len("[File: shot.png]")
    assert expected == 765 + 16
    assert with_image.usage.prompt_tokens - text_only.usage.prompt_tokens == expected
    [turn, _] = (await engine.store.window(await engine.store.conversation_id(KEY), 100_000)).messages
    assert turn.file_tokens == expected


async def test_the_thinking_status_is_up_while_files_download(engine: Engine, model_server: FakeModelServer) -> None:
    reply = RecordingReply()
    seen: list[int] = []

    async def check() -> None:
        seen.append(reply.started)

    await engine.handle(said("see", shared("a.png", IMAGE, "image/png", before=check)), reply)
    assert seen == [1] and reply.started == 1


async def test_a_second_delivery_of_a_message_with_files_neither_fetches_nor_starts_a_reply(
    engine: Engine, model_server: FakeModelServer
) -> None:
    """Slack sends one mention as both app_mention and message: the second must not leave a reply "thinking"."""
    served = Served()
    await ask(engine, said("see", shared("a.png", IMAGE, "image/png", served=served)))
    again = RecordingReply()
    result = await engine.handle(said("see", shared("a.png", IMAGE, "image/png", served=served)), again)
    assert result.status == TurnStatus.DUPLICATE
    assert (again.started, again.notice, served.fetched) == (0, None, ["a.png"])
    assert len(model_server.requests) == 1


async def test_a_pdf_is_read_as_text_headed_by_its_name(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("summarise", shared("report.pdf", REPORT, "application/pdf")))
    content = last_user(model_server)
    assert isinstance(content, str), "text-only files keep the content a plain string, for every server"
    assert content == "summarise\n\n[File: report.pdf]\nQuarterly report\n\nRevenue grew 12 percent in Q3.\nCosts fell."
    assert "_" not in reply.text, "no notes: everything was read"


async def test_a_scanned_pdf_with_no_text_gets_a_note_and_the_question_is_answered(
    engine: Engine, model_server: FakeModelServer
) -> None:
    reply = await ask(engine, said("what is in it?", shared("scan.pdf", pdf(["", ""]), "application/pdf")))
    assert reply.text.startswith("echo: what is in it?")
    assert "_I couldn't read scan.pdf: it has no text I can read (a scanned PDF, perhaps" in reply.text
    assert "[File: scan.pdf was shared but not read: it has no text I can read" in last_user(model_server)


async def test_a_damaged_pdf_gets_a_note(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("read", shared("broken.pdf", b"%PDF-1.4\n garbage", "application/pdf")))
    assert "_I couldn't read broken.pdf: it is damaged or not really a PDF._" in reply.text


async def test_text_files_are_read_by_type_or_name_and_binary_is_refused(
    engine: Engine, model_server: FakeModelServer
) -> None:
    files = (shared("data.csv", b"a,b\n1,2\n", "text/csv"), shared("app.log", b"\xef\xbb\xbfERROR boom \xff\n", ""),
             shared("main.py", b"print('hi')\n", "application/octet-stream"),
             shared("fake.txt", b"\x00\x01\x02binary", "text/plain"))
    reply = await ask(engine, said("check these", *files))
    assert last_user(model_server) == "\n\n".join([
        "check these", "[File: data.csv]\na,b\n1,2\n", "[File: app.log]\nERROR boom \ufffd\n", "[File: main.py]\nprint('hi')\n",
        "[File: fake.txt was shared but not read: it looks like binary data, not text]",
    ])
    assert "_I couldn't read fake.txt: it looks like binary data, not text._" in reply.text


async def test_a_zip_is_never_fetched_and_gets_a_note_while_the_question_is_answered(
    engine: Engine, model_server: FakeModelServer
) -> None:
    served = Served()
    reply = await ask(engine, said("what's inside?", shared("report.zip", b"PK\x03\x04", "application/zip", served=served),
                                   shared("clip.mp4", b"\x00" * 10, "video/mp4", served=served),
                                   shared("IMG_1.HEIC", b"\x00" * 10, "image/heic", served=served)))
    assert served.fetched == []
    assert reply.text.startswith("echo: what's inside?")
    assert "_I couldn't read report.zip: not a file type I can read (I read images, PDFs and text files)._" in reply.text
    assert "_I couldn't read clip.mp4: not a file type I can read" in reply.text
    assert "_I couldn't read IMG_1.HEIC: not an image format I can read (I read PNG, JPEG, GIF and WebP)._" in reply.text


@pytest.mark.parametrize("answer", [dict(status=400), dict(text="")], ids=["model failed", "empty answer"])
async def test_notes_about_unread_files_come_with_the_failure_notice(
    engine: Engine, model_server: FakeModelServer, answer: dict[str, Any]
) -> None:
    model_server.queue(**answer)
    reply = RecordingReply()
    result = await engine.handle(said("what's inside?", shared("report.zip", b"PK\x03\x04", "application/zip")), reply)
    assert result.status == TurnStatus.FAILED
    assert reply.notice is not None
    assert reply.notice.split("\n\n")[1].startswith("I couldn't read report.zip: not a file type I can read")


async def test_the_name_never_makes_an_image_only_the_bytes_do(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("look", shared("photo.png", b"<html>not a picture</html>", "image/png"),
                                   shared("pasted", IMAGE, "text/plain")))
    content = last_user(model_server)
    assert [part["type"] for part in content] == ["text", "text", "text", "image_url"]
    assert content[1]["text"] == "[File: photo.png was shared but not read: it is not a PNG, JPEG, GIF or WebP image]"
    assert content[3]["image_url"]["url"] == data_url(IMAGE)
    assert "_I couldn't read photo.png: it is not a PNG, JPEG, GIF or WebP image._" in reply.text


# -- limits, each named when hit --

async def test_a_file_over_the_size_limit_is_not_read_and_the_note_names_the_limit(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(file_max_bytes=1000)
    served = Served()
    unknown_size = shared("big.png", IMAGE, "image/png", size=None, served=served)
    declared = shared("huge.pdf", REPORT + bytes(2000), "application/pdf", served=served)
    reply = await ask(engine, said("look", unknown_size, declared))
    assert served.fetched == ["big.png"], "a declared size over the limit is not even fetched"
    assert served.limits == [(1000, 31.0)], "the adapter's own timeout is a backstop behind the core's"
    assert "_I couldn't read big.png: it is over the 1,000 bytes limit per file (`CHATBOTS_FILE_MAX_BYTES`)._" in reply.text
    assert "_I couldn't read huge.pdf: it is over the 1,000 bytes limit per file" in reply.text


async def test_too_many_files_read_the_first_ones_and_name_the_limit(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(file_max_count=2)
    served = Served()
    files = [shared(f"n{n}.txt", f"note {n}".encode(), "text/plain", served=served) for n in range(4)]
    reply = await ask(engine, said("read", *files))
    assert sorted(served.fetched) == ["n0.txt", "n1.txt"]
    assert ("_I only read the first 2 files of your message (`CHATBOTS_FILE_MAX_COUNT`), not n2.txt, n3.txt._"
            in reply.text)
    assert "[File: n0.txt]\nnote 0" in last_user(model_server)


async def test_pdf_pages_and_characters_are_bounded_and_named(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(pdf_max_pages=2, file_max_chars=30)
    long_pdf = pdf(["page one", "page two", "page three"])
    reply = await ask(engine, said("read", shared("long.pdf", long_pdf, "application/pdf"),
                                   shared("long.txt", b"x" * 100, "text/plain")))
    assert "_I only read the first 2 of the 3 pages of long.pdf (`CHATBOTS_PDF_MAX_PAGES`)._" in reply.text
    assert "_I only read the first 30 characters of long.txt (`CHATBOTS_FILE_MAX_CHARS`)._" in reply.text
    content = last_user(model_server)
    assert "[File: long.pdf]\npage one\n\npage two" in content and "page three" not in content
    assert "[File: long.txt]\n" + "x" * 30 in content and "x" * 31 not in content


async def test_a_failed_download_is_a_note_not_a_failed_turn(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("see", failing("gone.png", "image/png", "the file host answered 404")))
    assert "_I couldn't read gone.png: I couldn't download it (the file host answered 404)._" in reply.text
    assert reply.finished


async def test_a_download_that_hangs_times_out_with_a_note(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(file_timeout=0.1)
    never = asyncio.Event()
    reply = await ask(engine, said("see", shared("slow.txt", b"hi", "text/plain", before=never.wait),
                                   shared("quick.txt", b"fine", "text/plain")))
    assert "_I couldn't read slow.txt: it took longer than 0.1 s to download (`CHATBOTS_FILE_TIMEOUT`)._" in reply.text
    assert "[File: quick.txt]\nfine" in last_user(model_server)


async def test_a_message_with_only_files_is_a_question_about_them(engine: Engine, model_server: FakeModelServer) -> None:
    reply = await ask(engine, said("", shared("notes.md", b"# Plan\nship it", "text/markdown")))
    assert last_user(model_server) == "[File: notes.md]\n# Plan\nship it"
    assert reply.text == "echo: [File: notes.md]\n# Plan\nship it"


# -- history --

async def test_follow_ups_still_see_earlier_files_within_the_window(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine()
    await ask(engine, said("look", shared("shot.png", IMAGE, "image/png"), shared("a.txt", b"alpha", "text/plain")))
    await ask(engine, said("and now?", n=2))
    later = make_engine()  # another process: read from the database, not from memory
    await ask(later, said("what colour was the image?", n=3))
    for request in (-2, -1):
        first = model_server.requests[request]["messages"][1]["content"]
        assert first == [
            {"type": "text", "text": "look"}, {"type": "text", "text": "[File: shot.png]"},
            {"type": "image_url", "image_url": {"url": data_url(IMAGE)}}, {"type": "text", "text": "[File: a.txt]\nalpha"},
        ]


async def test_turns_with_files_drop_whole_when_the_window_is_full(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=2000, max_output_tokens=500)
    model_server.queue("ok")
    await ask(engine, said("first", shared("big.txt", b"word " * 800, "text/plain")))
    assert "first" in last_user(model_server)
    await ask(engine, said("second", shared("big2.txt", b"more " * 800, "text/plain"), n=2))
    contents = [m["content"] for m in model_server.requests[-1]["messages"][1:]]
    assert not any("first" in c for c in contents), "the oldest turn went whole, its file with it"
    assert contents[-1].startswith("second\n\n[File: big2.txt]")


async def test_an_image_too_big_for_the_window_is_left_out_with_a_note(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="gpt-4o-mini", context_tokens=4000, max_output_tokens=500)  # 25,501 tokens an image
    reply = await ask(engine, said("see", shared("big.png", IMAGE, "image/png")))
    assert "_I couldn't read big.png: it does not fit in what this model can read at once._" in reply.text
    assert last_user(model_server) == "see\n\n[File: big.png was shared but not read: too big for this model]"


async def test_a_file_too_big_for_the_window_is_cut_with_a_note(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=2000, max_output_tokens=500)
    reply = await ask(engine, said("read", shared("book.txt", ("lorem ipsum " * 2000).encode(), "text/plain")))
    assert "_I only read the first part of book.txt: all of it does not fit in what this model can read at once._" in reply.text
    content = last_user(model_server)
    assert content.endswith("[The rest of this file was cut: it is longer than the model can read.]")
    assert len(content) < 8000


# -- models without vision --

async def test_a_model_that_refuses_images_answers_from_the_text_and_is_remembered(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine()
    model_server.reject_images = True
    served = Served()
    reply = await ask(engine, said("what is this?", shared("a.png", IMAGE, "image/png", served=served)))
    assert len(model_server.requests) == 2, "refused once, then answered from the text"
    assert last_user(model_server) == "what is this?\n\n[File: a.png, an image, not shown: this model can't read images]"
    assert reply.text.startswith("echo: what is this?")
    assert ("_This model can't read images, so I answered from the text alone. An admin can pick a model that can "
            "(`/chatbot model`), or set `CHATBOTS_VISION=off`._") in reply.text

    reply = await ask(engine, said("and this?", shared("b.png", IMAGE, "image/png", served=served), n=2))
    assert len(model_server.requests) == 3, "remembered: no image sent, no second refusal"
    assert served.fetched == ["a.png"], "nor fetched"
    assert "_I couldn't read b.png: this model can't read images (an admin can pick one that can with `/chatbot model`" in reply.text
    assert not any(isinstance(m["content"], list) for m in model_server.requests[-1]["messages"])


async def test_an_image_the_model_cannot_read_is_left_out_but_the_model_still_reads_images(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    """OpenAI's 400 "You uploaded an unsupported image" is about that file, not the model: one bad file (damaged, or
    a format the model does not take) must not turn images off for every later message."""
    engine = make_engine()
    model_server.unreadable_image_bytes = {b"broken inside"}
    reply = await ask(engine, said("what is this?", shared("bad.png", png(64, 64, b"broken inside"), "image/png")))
    assert len(model_server.requests) == 2, "refused once, then answered from the text"
    assert last_user(model_server) == "what is this?\n\n[File: bad.png, an image, not shown: the image could not be read]"
    assert reply.text.startswith("echo: what is this?")
    assert "_The model couldn't read the images here (damaged, or in a form it doesn't take)" in reply.text
    assert "This model can't read images" not in reply.text

    other = ConversationKey("test", "T1", "C1", "thread-2")
    await ask(engine, said("and this?", shared("good.png", IMAGE, "image/png"), n=2, key=other))
    assert isinstance(last_user(model_server), list), "a good image still goes to the model"
    assert len(model_server.requests) == 3

    reply = RecordingReply()  # CHATBOTS_VISION=on: no retry from the text, and the notice blames the image, not the model
    bad = shared("bad.png", png(64, 64, b"broken inside"), "image/png")
    assert (await make_engine(vision="on").handle(said("see", bad, n=3, key=ConversationKey("test", "T1", "C1", "thread-3")), reply)).status \
        == TurnStatus.FAILED
    assert reply.notice is not None and "couldn't read an image in this conversation" in reply.notice


async def test_vision_off_never_fetches_images(make_engine: Callable[..., Engine], model_server: FakeModelServer) -> None:
    engine = make_engine(vision="off")
    served = Served()
    reply = await ask(engine, said("see", shared("a.png", IMAGE, "image/png", served=served),
                                   shared("b.txt", b"text", "text/plain", served=served)))
    assert served.fetched == ["b.txt"]
    assert "_I couldn't read a.png: this bot is set not to read images (`CHATBOTS_VISION=off`)._" in reply.text
    assert isinstance(last_user(model_server), str)


async def test_vision_on_always_sends_images_and_says_so_when_refused(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(vision="on")
    model_server.reject_images = True
    reply = RecordingReply()
    result = await engine.handle(said("see", shared("a.png", IMAGE, "image/png")), reply)
    assert result.status == TurnStatus.FAILED and len(model_server.requests) == 1
    assert reply.notice is not None and "This model can't read images" in reply.notice
    model_server.reject_images = False
    await ask(engine, said("again", shared("a.png", IMAGE, "image/png"), n=2))
    assert isinstance(last_user(model_server), list), "never remembered as blind: on means on"


# -- moderation and privacy --

async def test_moderation_checks_images_and_extracted_text(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(moderation=True)
    model_server.flag_image_bytes = {b"FORBIDDEN"}
    model_server.flag_words = {"forbidden words"}
    bad = png(8, 8, note=b"FORBIDDEN")
    reply = RecordingReply()
    result = await engine.handle(said("is this fine?", shared("bad.png", bad, "image/png")), reply)
    assert result.status == TurnStatus.FLAGGED and model_server.requests == []
    assert model_server.moderation_requests[0]["input"] == [
        {"type": "text", "text": "is this fine?"}, {"type": "image_url", "image_url": {"url": data_url(bad)}}]
    result = await engine.handle(said("hm", shared("t.txt", b"some forbidden words", "text/plain"), n=2), RecordingReply())
    assert result.status == TurnStatus.FLAGGED
    assert model_server.moderation_requests[1]["input"] == "hm\n\n[File: t.txt]\nsome forbidden words"
    result = await engine.handle(said("fine", shared("ok.png", IMAGE, "image/png"), n=3), RecordingReply())
    assert result.status == TurnStatus.ANSWERED


@pytest.mark.parametrize("status", [400, 422])
async def test_a_moderation_model_that_refuses_images_checks_the_text_alone_and_says_the_images_were_not_checked(
    make_engine: Callable[..., Engine], model_server: FakeModelServer, caplog: Any, status: int
) -> None:
    """CHATBOTS_MODERATION_MODEL=text-moderation-latest (or a gateway refusing image inputs): with the default
    CHATBOTS_MODERATION_ON_ERROR=block, failing the call would block every message with an image."""
    caplog.set_level("INFO")
    configured = Config.from_env({"CHATBOTS_MODERATION_MODEL": "text-moderation-latest"})
    engine = make_engine(moderation=True, moderation_model=configured.moderation_model)
    model_server.moderation_image_status = status
    model_server.flag_words = {"forbidden words"}

    def unmoderated() -> float | None:
        return engine.metrics.registry.get_sample_value("chatbots_moderation_unmoderated_images_total")

    def questions_checked() -> list[Any]:  # the answers are checked too, as text
        return [request["input"] for request in model_server.moderation_requests if "echo:" not in str(request["input"])]

    await ask(engine, said("is this fine?", shared("a.png", IMAGE, "image/png")))
    assert questions_checked() == [
        [{"type": "text", "text": "is this fine?"}, {"type": "image_url", "image_url": {"url": data_url(IMAGE)}}],
        "is this fine?",
    ]
    assert all(request["model"] == "text-moderation-latest" for request in model_server.moderation_requests)
    assert unmoderated() == 1
    await ask(engine, said("and this?", shared("b.png", IMAGE, "image/png"), n=2))
    assert questions_checked()[2:] == ["and this?"], "remembered: the text alone at once"
    assert unmoderated() == 2
    result = await engine.handle(said("some forbidden words", shared("c.png", IMAGE, "image/png"), n=3), RecordingReply())
    assert result.status == TurnStatus.FLAGGED, "the text is still moderated"

    lines = [record.getMessage() for record in caplog.records if "image inputs" in record.getMessage()]
    assert lines == ["moderation model text-moderation-latest refuses image inputs: images are not moderated, only "
                     "the text (use an omni-moderation model to moderate images)"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "moderation call failed" not in logged and base64.b64encode(IMAGE).decode()[:40] not in logged
    assert "is this fine" not in logged


async def test_file_contents_never_reach_the_logs(
    engine: Engine, model_server: FakeModelServer, caplog: Any
) -> None:
    caplog.set_level("DEBUG")
    model_server.reject_images = True
    await ask(engine, said("x", shared("secret.txt", b"SECRET-CONTENT", "text/plain"), shared("a.png", IMAGE, "image/png"),
                           shared("bad.pdf", b"%PDF-SECRET-PDF", "application/pdf")))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SECRET" not in logged and base64.b64encode(IMAGE).decode()[:40] not in logged


async def test_redaction_covers_text_read_from_files(make_engine: Callable[..., Engine], model_server: FakeModelServer) -> None:
    engine = make_engine(redact=frozenset({"emails"}))
    await ask(engine, said("who?", shared("contacts.txt", b"ada@example.com", "text/plain")))
    assert "ada@example.com" not in json.dumps(model_server.requests[-1])
    [question, _] = (await engine.store.window(await engine.store.conversation_id(KEY), 100_000)).messages
    stored = await engine.store.message_files([question.id])
    assert stored
    assert "ada@example.com" not in json.dumps([file.content for files in stored.values() for file in files])


async def test_forget_removes_stored_files(engine: Engine, model_server: FakeModelServer) -> None:
    await ask(engine, said("look", shared("shot.png", IMAGE, "image/png")))
    store: Store = engine.store
    assert (await store.run(store.sql._run, "SELECT COUNT(*) FROM message_files")).rows[0][0] == 1
    await store.forget_conversation(KEY)
    assert (await store.run(store.sql._run, "SELECT COUNT(*) FROM message_files")).rows[0][0] == 0


async def test_a_messages_files_download_four_at_a_time(engine: Engine, model_server: FakeModelServer) -> None:
    in_flight: list[int] = [0]
    peak: list[int] = [0]
    four = asyncio.Event()
    go = asyncio.Event()

    async def held() -> None:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        if in_flight[0] == 4:
            four.set()
        await go.wait()
        in_flight[0] -= 1

    files = [shared(f"f{n}.txt", b"x", "text/plain", before=held) for n in range(7)]
    turn = asyncio.create_task(ask(engine, said("read", *files)))
    await asyncio.wait_for(four.wait(), 5)
    go.set()
    await turn
    assert peak[0] == 4
