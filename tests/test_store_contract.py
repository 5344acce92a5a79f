"""One contract for both stores: every test here runs against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chatbots.clock import iso
from chatbots.retention import upkeep
from chatbots.installations import InstalledApp
from chatbots.store import Store, UsageRecord
from chatbots.store import reports as queries
from chatbots.store.base import INTERRUPTED_MARK, PURGE_BATCH
from chatbots.store.postgres import PostgresDatabase
from chatbots.store.sqlite import SQLiteDatabase
from chatbots.types import ConversationKey
from chatbots.window import StoredFile
from tests.postgres import empty

KEY = ConversationKey("slack", "T1", "C1", "1.0")
MINUTE = timedelta(minutes=1)
Now = list[datetime]


@pytest.fixture
def now() -> Now:
    return [datetime(2026, 6, 1, 12, tzinfo=timezone.utc)]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path, now: Now) -> Callable[[], Store]:
    """Opens a Store on the backend under test; every store opened in one test shares one database."""
    clock = lambda: now[0]  # noqa: E731
    if request.param == "sqlite":
        path = tmp_path / "bot.db"
        return lambda: Store(SQLiteDatabase.open(path, clock))
    url = request.getfixturevalue("postgres_url")
    empty(url)
    return lambda: Store(PostgresDatabase.open(url, clock))


@pytest.fixture
async def store(open_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = open_store()
    yield opened
    opened.close()


async def test_ids_are_stable_and_workspaces_are_separate(store: Store) -> None:
    a = await store.conversation_id(KEY)
    assert await store.conversation_id(KEY) == a
    b = await store.conversation_id(ConversationKey("slack", "T2", "C1", "1.0"))
    c = await store.conversation_id(ConversationKey("discord", "T1", "C1", "1.0"))
    assert len({a, b, c}) == 3
    assert await store.has_conversation(KEY)
    assert not await store.has_conversation(ConversationKey("slack", "T1", "C1", "2.0"))
    before = store.sql.statements
    await store.conversation_id(ConversationKey("slack", "T1", "C1", "3.0"))
    assert store.sql.statements - before == 1, "a new thread in a known workspace is one statement"


async def test_one_platform_message_is_stored_once(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    first = await store.add_message(conversation, "user", "hi", 3, platform_id="m1", author_id="U1", exact=False)
    assert first is not None
    assert await store.add_message(conversation, "user", "hi", 3, platform_id="m1", author_id="U1") is None
    assert await store.first_delivery("slack", "Ev1") and not await store.first_delivery("slack", "Ev1")
    assert await store.first_delivery("discord", "Ev1"), "platforms have separate id spaces"


async def test_windows_answers_and_exact_counts(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    for n in range(6):
        await store.add_message(conversation, "user", f"turn {n}", 40, exact=False)
    window = await store.window(conversation, 100)
    assert [m.text for m in window.messages] == ["turn 4", "turn 5"] and window.rough
    assert await store.make_exact(conversation, 100, lambda message: 10) == 6
    assert [m.text for m in (await store.window(conversation, 100)).messages] == [f"turn {n}" for n in range(6)]

    row = await store.begin_answer(conversation, "gpt-4o-mini")
    assert [m.text for m in (await store.window(conversation, 1000)).messages][-1] == "turn 5", "streaming stays out"
    await store.complete_answer(row, "the answer", 3, status="ok", platform_id="p1", usage=(10, 3))
    assert (await store.window(conversation, 1000)).messages[-1].text == "the answer"
    empty_row = await store.begin_answer(conversation, "gpt-4o-mini")
    await store.complete_answer(empty_row, "  ", 0, status="interrupted")
    assert (await store.window(conversation, 1000)).messages[-1].text == "the answer", "nothing shown leaves no row"
    assert await store.latest_thread("slack", "T1", "C1") == "1.0"
    assert await store.is_participant(KEY, "U1") is False


async def test_a_question_begins_its_answer_and_the_answer_counts_its_usage_in_one_statement_each(store: Store) -> None:
    """The hot path's two writes: the question with its answer's row, and the answer with its usage and the release
    of its reservation; each is one statement on PostgreSQL (a round trip each)."""
    conversation = await store.conversation_id(KEY)
    workspace = await store.workspace_id("slack", "T1")
    await store.window(conversation, 1000)  # held in memory: the writes below must keep it current
    before = store.sql.statements
    question, answer = await store.add_question(conversation, "why?", 3, "gpt-4o-mini", author_id="U1", platform_id="q1")
    asked = store.sql.statements - before
    assert question is not None and answer is not None and question < answer, "history's order is the ids'"
    assert [m.text for m in (await store.window(conversation, 1000)).messages] == ["why?"], "the answer streams out of history"
    assert await store.add_question(conversation, "why?", 3, "gpt-4o-mini", platform_id="q1") == (None, None), "a redelivery begins nothing"
    reservation = await store.reserve_usage(workspace, "U1", "2026-06-01", "2026-06-01T00:00:00.000000Z", None, lambda snapshot: 500)
    assert (await store.usage_snapshot(workspace, "U1", "2026-06-01", "2026-06-01T00:00:00.000000Z", None)).user_held == 500
    mid = store.sql.statements
    counted = UsageRecord(workspace, "U1", "2026-06-01", "gpt-4o-mini", 30, 7, reservation)
    await store.complete_answer(answer, "because.", 2, status="ok", usage=(30, 7), reply_parts=(workspace, ["r1"]), counted=counted)
    if store.shared:
        assert (asked, store.sql.statements - mid) == (1, 1), "one statement each for question and answer"
    assert [m.text for m in (await store.window(conversation, 1000)).messages] == ["why?", "because."]
    context, none = await store.add_question(conversation, "fyi", 2, None, platform_id="q2")
    assert context is not None and none is None, "a message kept as context gets no answer row"
    snapshot = await store.usage_snapshot(workspace, "U1", "2026-06-01", "2026-06-01T00:00:00.000000Z", None)
    assert (snapshot.user_used, snapshot.user_held) == (37, 0), "usage counted, reservation released"
    assert await store.record_feedback(workspace, "r1", "U2", 1), "the reply's parts were recorded too"

    failed = (await store.add_question(conversation, "again?", 3, "m", platform_id="q3"))[1]
    assert failed is not None
    await store.complete_answer(failed, "", 0, status="interrupted", counted=UsageRecord(workspace, "U1", "2026-06-01", "m", 5, 0))
    assert [m.text for m in (await store.window(conversation, 1000)).messages][-1] == "again?", "nothing shown: no row"
    assert (await store.day_usage(workspace, "2026-06-01")) == {"U1": 42}, "a failed answer's usage still counts"


async def test_request_times_are_forgotten_once_a_minute_old_also_for_people_who_stopped_asking(
    store: Store, now: Now
) -> None:
    """Rate caps look back one minute, so older request times are of no use to anyone: none are kept."""
    workspace = await store.workspace_id("slack", "T1")

    async def admit(user: str) -> None:
        day, held_since, minute_ago = now[0].date().isoformat(), iso(now[0] - timedelta(hours=1)), iso(now[0] - MINUTE)
        reservation = await store.reserve_usage(workspace, user, day, held_since, minute_ago, lambda snapshot: 10)
        await store.settle_reservation(reservation, workspace, user, day, "m", None)

    for user in ("U1", "U2", "U3"):
        await admit(user)
    now[0] += timedelta(minutes=2)
    await admit("U4")
    assert store.sql.query_dicts("SELECT user_id FROM requests") == [{"user_id": "U4"}]


async def test_an_answer_whose_lease_ran_out_is_marked_interrupted(store: Store, now: Now) -> None:
    conversation = await store.conversation_id(KEY)
    stale = await store.begin_answer(conversation, "m")
    await store.save_partial(stale, "half an ans")
    now[0] += timedelta(minutes=5)
    live = await store.begin_answer(conversation, "m")
    await store.save_partial(live, "still going")
    assert await store.recover_interrupted(idle_since=(now[0] - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == 1
    texts = [m.text for m in (await store.window(conversation, 10_000)).messages]
    assert texts == ["half an ans" + INTERRUPTED_MARK], "the live answer is still streaming, so not in history"


async def test_text_with_nul_characters_is_stored_not_refused(open_store: Callable[[], Store]) -> None:
    """People and models may send U+0000, which PostgreSQL text cannot hold: it is kept as U+FFFD there."""
    store = open_store()
    conversation = await store.conversation_id(KEY)
    await store.add_message(conversation, "user", "before\x00after", 3, platform_id="m\x001", author_name="A\x00da")
    answer = await store.begin_answer(conversation, "gpt-4o-mini")
    await store.save_partial(answer, "partial\x00")
    await store.complete_answer(answer, "ans\x00wer", 2, status="ok", platform_id="p\x001", usage=(1, 1))
    workspace = await store.workspace_id("slack", "T1")
    await store.set_setting_audited(workspace, "instructions", "Be\x00brief.", actor_id="U\x00ADMIN")
    await store.record_moderation(KEY, "in", "flagged", ["harassment"], "bad\x00text")
    assert await store.add_message(conversation, "user", "again", 1, platform_id="m\x001") is None, "still one message"

    cold = open_store()  # read back from the database, not from memory
    shown = [(m.text, m.author_name) for m in (await cold.window(conversation, 1000)).messages]
    kept = [(text.replace("\x00", "\ufffd"), (name or "").replace("\x00", "\ufffd")) for text, name in shown]
    assert kept == [("before\ufffdafter", "A\ufffdda"), ("ans\ufffdwer", "")]
    assert (await cold.settings_for(KEY))["instructions"].replace("\x00", "\ufffd") == "Be\ufffdbrief."
    cold.close()
    store.close()


async def test_settings_audit_usage_feedback_and_reports(store: Store) -> None:
    workspace = await store.workspace_id("slack", "T1")
    assert await store.set_setting_audited(workspace, "instructions", "Be brief.", actor_id="UADMIN") is None
    assert await store.set_setting_audited(workspace, "instructions", "Be kind.", actor_id="UADMIN") == "Be brief."
    await store.set_setting(workspace, "instructions", "Channel rule.", channel="C1")
    assert await store.settings_for(KEY) == {"instructions": "Be kind.", "channel_instructions": "Channel rule."}
    assert [row["new_value"] for row in await store.audit_log()] == ["Be kind.", "Be brief."]

    await store.record_usage(workspace, "U1", "2026-06-01", "gpt-4o-mini", 100, 20)
    await store.record_usage(workspace, "U1", "2026-06-01", "gpt-4o-mini", 1, 2)
    assert await store.day_usage(workspace, "2026-06-01") == {"U1": 123}
    [usage] = await store.usage_rows("2026-01-01")
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["replies"]) == (101, 22, 2)

    conversation = await store.conversation_id(KEY)
    await store.add_message(conversation, "user", "what is 2+2?", 5, author_id="U1", platform_id="q1")
    answer = await store.add_message(conversation, "assistant", "5", 1)
    assert answer is not None
    await store.record_reply_parts(workspace, answer, ["r1", "r2"])
    assert await store.record_feedback(workspace, "r2", "U1", -1)
    assert await store.record_feedback(workspace, "r1", "U2", 1)
    assert not await store.record_feedback(workspace, "not-a-reply", "U1", 1)
    assert await store.feedback_totals(workspace, "2000-01-01") == (1, 1)
    [down] = await store.run(queries.downvoted, store.sql, "2000-01-01")
    assert (down["question"], down["answer"], down["down"], down["up"]) == ("what is 2+2?", "5", 1, 1)
    await store.record_moderation(KEY, "in", "flagged", ["violence"], None)
    [logged] = await store.run(queries.moderation_log, store.sql, "2000-01-01", True)
    assert (logged["decision"], logged["categories"]) == ("flagged", "violence")
    exported = await store.run(lambda: list(queries.workspace_messages(store.sql, "slack", "T1")))
    assert [row["text"] for row in exported] == ["what is 2+2?", "5"]
    assert await store.is_participant(KEY, "U1")


async def test_forgetting_and_erasing(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    other = await store.conversation_id(ConversationKey("slack", "T1", "C1", "2.0"))
    await store.add_message(conversation, "user", "a", 1)
    await store.add_message(other, "user", "b", 1)
    assert await store.forget_conversation(KEY) == 1
    assert await store.forget_channel("slack", "T1", "C1") == 1
    await store.add_message(conversation, "user", "c", 1)
    assert await store.delete_workspace("slack", "T1")
    assert not await store.has_conversation(ConversationKey("slack", "T1", "C1", "2.0"))


async def test_purges_go_in_bounded_batches_and_a_job_runs_once_per_period(store: Store, now: Now) -> None:
    conversation = await store.conversation_id(KEY)
    await store.run(store.sql._run_many, "INSERT INTO messages (conversation_id, role, text, tokens, created_at) "
                    "VALUES (?, 'user', 'old', 1, '2025-01-01T00:00:00.000000Z')", [(conversation,)] * (PURGE_BATCH + 5))
    await store.add_message(conversation, "user", "new", 1)
    assert await store.run(store.sql.purge_batch, "2026-01-01") == PURGE_BATCH
    assert await store.purge("2026-01-01") == 5
    assert [m.text for m in (await store.window(conversation, 100)).messages] == ["new"]
    assert await store.first_delivery("slack", "old-event")
    now[0] += timedelta(days=3)
    assert await store.purge_events("2026-06-02") == 1

    assert await store.claim_job("purge", 3600)
    assert not await store.claim_job("purge", 3600), "claimed once per period"
    now[0] += timedelta(hours=1)
    assert await store.claim_job("purge", 3600)


async def test_two_processes_on_one_postgres_see_each_others_writes_at_once(postgres_url: str, now: Now) -> None:
    empty(postgres_url)
    first, second = (Store(PostgresDatabase.open(postgres_url, lambda: now[0])) for _ in range(2))
    try:
        conversation = await first.conversation_id(KEY)
        assert await second.conversation_id(KEY) == conversation
        await first.add_message(conversation, "user", "one", 1)
        assert [m.text for m in (await second.window(conversation, 100)).messages] == ["one"]
        await second.add_message(conversation, "assistant", "two", 1)
        assert [m.text for m in (await first.window(conversation, 100)).messages] == ["one", "two"], "no stale window"
        workspace = await first.workspace_id("slack", "T1")
        assert await second.settings_for(KEY) == {}
        await first.set_setting(workspace, "model", "gpt-4o")
        assert await second.settings_for(KEY) == {"model": "gpt-4o"}, "a change applies to the next message anywhere"
    finally:
        first.close()
        second.close()


# -- files shared with messages --

FILES = [StoredFile("image", "shot.png", "image/png", "data:image/png;base64,iVBORw0KGgo=", 765),
         StoredFile("text", "notes.txt", "text/plain", "[File: notes.txt]\nhello", 9),
         StoredFile("note", "a.zip", "application/zip", "[File: a.zip was shared but not read: not a file type]", 0)]


async def files_left(store: Store) -> int:
    return (await store.run(store.sql._run, "SELECT COUNT(*) FROM message_files")).rows[0][0]


async def test_files_are_stored_with_their_message_and_read_back_in_order(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    plain = await store.add_message(conversation, "user", "just text", 5, platform_id="m0")
    shared = await store.add_message(conversation, "user", "look", 5 + 774, platform_id="m1", files=FILES)
    assert shared is not None and plain is not None
    assert await store.add_message(conversation, "user", "look", 779, platform_id="m1", files=FILES) is None
    assert await files_left(store) == 3, "a redelivery stores no files twice"
    window = (await store.window(conversation, 10_000)).messages
    assert [m.file_tokens for m in window] == [0, 774]
    store.windows.clear()  # the same from disk
    assert [m.file_tokens for m in (await store.window(conversation, 10_000)).messages] == [0, 774]
    assert await store.message_files([shared]) == {shared: FILES}
    exported = await store.run(lambda: list(queries.workspace_messages(store.sql, "slack", "T1")))
    assert "files" not in exported[0]
    assert [(f["kind"], f["name"], f["content"]) for f in exported[1]["files"]] == [
        (f.kind, f.name, f.content) for f in FILES]


async def test_exact_counts_keep_the_files_size(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    await store.add_message(conversation, "user", "look", 800, exact=False, files=FILES[:1])
    assert await store.make_exact(conversation, 10_000, lambda message: 7) == 1
    [message] = (await store.window(conversation, 10_000)).messages
    assert (message.tokens, message.exact, message.file_tokens) == (7 + 765, True, 765)


async def test_forget_erase_and_retention_remove_files_with_their_messages(store: Store, now: Now) -> None:
    conversation = await store.conversation_id(KEY)
    other = await store.conversation_id(ConversationKey("slack", "T1", "C2", "1.0"))
    await store.add_message(conversation, "user", "a", 800, files=FILES)
    await store.add_message(other, "user", "b", 800, files=FILES)
    assert await store.forget_conversation(KEY) == 1
    assert await files_left(store) == 3
    await store.add_message(conversation, "user", "c", 800, files=FILES)
    assert await store.forget_channel("slack", "T1", "C2") == 1
    assert await files_left(store) == 3
    assert await store.delete_workspace("slack", "T1")
    assert await files_left(store) == 0
    now[0] = datetime(2026, 1, 1, tzinfo=timezone.utc)
    await store.add_message(await store.conversation_id(KEY), "user", "old", 800, files=FILES)
    now[0] = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert await store.purge("2026-03-01") == 1
    assert await files_left(store) == 0


async def test_a_question_with_files_begins_its_answer_after_them(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    question, answer = await store.add_question(conversation, "look", 800, "gpt-4o", platform_id="q1", files=FILES)
    assert question is not None and answer is not None and answer > question
    assert await store.message_files([question]) == {question: FILES}
    assert await store.add_question(conversation, "look", 800, "gpt-4o", platform_id="q1", files=FILES) == (None, None)
    assert await files_left(store) == 3
    plain, plain_answer = await store.add_question(conversation, "no files", 5, "gpt-4o", platform_id="q2", files=[])
    assert plain is not None and plain_answer is not None
    await store.complete_answer(answer, "an answer", 3, status="ok")
    assert [m.file_tokens for m in (await store.window(conversation, 10_000)).messages] == [774, 0, 0]


async def test_an_installation_is_saved_found_replaced_and_deleted(store: Store, now: Now) -> None:
    app = InstalledApp("E1", "T1", False, "xoxb-one", "UBOT", bot_id="B1", bot_scopes="chat:write", team_name="Acme",
                       installer_id="U1", bot_refresh_token="xoxe-1", bot_token_expires_at=1_800_000_000)
    await store.save_installation(app)
    found = await store.find_installation("E1", "T1")
    assert found == replace(app, installed_at=iso(now[0]))
    assert await store.find_installation("E1", "T2") is None
    assert await store.find_installation("", "T1") is None
    now[0] += MINUTE
    await store.save_installation(replace(app, bot_token="xoxb-two", bot_refresh_token="xoxe-2"))
    again = await store.find_installation("E1", "T1")
    assert again is not None and again.bot_token == "xoxb-two" and again.bot_refresh_token == "xoxe-2"
    assert again.installed_at == found.installed_at  # type: ignore[union-attr]
    assert await store.delete_installation("E1", "T1")
    assert await store.find_installation("E1", "T1") is None
    assert not await store.delete_installation("E1", "T1")


async def test_an_org_wide_installation_is_kept_apart_from_its_workspaces(store: Store) -> None:
    await store.save_installation(InstalledApp("E1", "", True, "xoxb-org", "UORG", team_name=""))
    await store.save_installation(InstalledApp("E1", "T1", False, "xoxb-t1", "UT1"))
    org = await store.find_installation("E1", "")
    assert org is not None and org.is_enterprise_install and org.bot_token == "xoxb-org"
    assert (await store.find_installation("E1", "T1")).bot_token == "xoxb-t1"  # type: ignore[union-attr]


async def test_the_installation_listing_never_carries_tokens(store: Store) -> None:
    await store.save_installation(InstalledApp("", "T1", False, "xoxb-secret", "UBOT", team_name="Acme",
                                               installer_id="U1", bot_refresh_token="xoxe-secret"))
    [summary] = await store.installations()
    assert (summary.team_id, summary.team_name, summary.installer_id) == ("T1", "Acme", "U1")
    assert "secret" not in repr(summary)


async def test_an_oauth_state_is_good_once_and_only_until_it_expires(store: Store, now: Now) -> None:
    await store.issue_oauth_state("s1", now[0] + 10 * MINUTE)
    await store.issue_oauth_state("s2", now[0] + 10 * MINUTE)
    assert await store.consume_oauth_state("s1")
    assert not await store.consume_oauth_state("s1")
    assert not await store.consume_oauth_state("never-issued")
    now[0] += 11 * MINUTE
    assert not await store.consume_oauth_state("s2")


async def test_money_reservations_and_the_months_usage_are_read_in_the_snapshot(store: Store) -> None:
    """What money budgets price: this month's usage (the person's apart) and the USD held by answers in progress."""
    workspace = await store.workspace_id("slack", "T1")
    await store.record_usage(workspace, "U1", "2026-06-02", "gpt-4o", 100, 10)
    await store.record_usage(workspace, "U2", "2026-06-02", "gpt-4o", 50, 5)
    await store.record_usage(workspace, "U3", "2026-06-03", "gpt-4o", 7, 1)
    await store.record_usage(workspace, "U1", "2026-05-31", "gpt-4o", 999, 999)  # last month
    held_since = "2026-06-01T00:00:00.000000Z"
    reservation = await store.reserve_usage(
        workspace, "U1", "2026-06-03", held_since, None, lambda snapshot: (300, 0.25), "2026-06-01"
    )
    snapshot = await store.usage_snapshot(workspace, "U1", "2026-06-03", held_since, None, "2026-06-01")
    assert sorted(snapshot.spent) == [("", "2026-06-02", "gpt-4o", 50, 5), ("", "2026-06-03", "gpt-4o", 7, 1),
                                      ("U1", "2026-06-02", "gpt-4o", 100, 10)]
    assert snapshot.held_cost == [("U1", "2026-06-03", 0.25)] and snapshot.user_held == 300
    assert sorted(await store.month_usage(workspace, "2026-06-01"))[0] == ("U1", "2026-06-02", "gpt-4o", 100, 10)
    await store.settle_reservation(reservation, workspace, "U1", "2026-06-03", "gpt-4o", (10, 2))
    after = await store.usage_snapshot(workspace, "U1", "2026-06-03", held_since, None, "2026-06-01")
    assert after.held_cost == [] and ("U1", "2026-06-03", "gpt-4o", 10, 2) in after.spent


async def test_a_notice_is_claimed_once_across_stores_and_forgotten_after_its_periods(
    open_store: Callable[[], Store], now: Now
) -> None:
    first, second = open_store(), open_store()  # two replicas on one database
    try:
        workspace = await first.workspace_id("slack", "T1")
        claims = await asyncio.gather(*(store.claim_notice(workspace, "alert:day:2026-06-01:80") for store in [first, second] * 5))
        assert sorted(claims) == [False] * 9 + [True]
        now[0] += timedelta(days=63)
        await upkeep(first, None)
        assert await second.claim_notice(workspace, "alert:day:2026-06-01:80"), "two months on, the mark is gone"
    finally:
        first.close()
        second.close()
