"""Long answers split into parts a platform accepts without breaking words or code blocks."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chatbots.paging import FENCE, split_message

ANSWER = (
    "Here is the plan.\n\n"
    + "\n".join(f"- step {n}: do the thing carefully and check the result" for n in range(30))
    + "\n\n```python\n"
    + "\n".join(f"def handler_{n}(event):\n    return process(event, retries={n})" for n in range(40))
    + "\n```\n\nThat is all, and it should be enough to get started with the migration."
)


def test_a_4500_character_answer_with_code_splits_into_balanced_parts() -> None:
    assert 4000 < len(ANSWER) < 5000
    parts = split_message(ANSWER, 2000)
    assert len(parts) == 3
    for part in parts:
        assert len(part) <= 2000
        assert part.count(FENCE) % 2 == 0, f"unbalanced fence in part:\n{part}"
    assert parts[1].startswith("```python") or parts[2].startswith("```python")


def test_no_word_is_cut_and_nothing_is_lost() -> None:
    parts = split_message(ANSWER, 2000)
    words = re.findall(r"\S+", ANSWER)
    rebuilt = [w for part in parts for w in re.findall(r"\S+", part)]
    added = [w for w in rebuilt if w.startswith(FENCE)]
    assert [w for w in rebuilt if not w.startswith(FENCE)] == [w for w in words if not w.startswith(FENCE)]
    assert len(added) >= len([w for w in words if w.startswith(FENCE)])


def test_paragraph_boundaries_are_preferred() -> None:
    text = ("word " * 150).strip() + "\n\n" + ("more " * 150).strip()
    parts = split_message(text, 1000)
    assert parts[0].endswith("word") and parts[1].startswith("more")


def test_short_text_is_one_part() -> None:
    assert split_message("hello", 2000) == ["hello"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab c\n`é🙂")), max_size=3000), st.integers(min_value=40, max_value=500))
def test_parts_always_fit_and_keep_every_non_space_character(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert all(len(part) <= limit for part in parts)
    strip = lambda s: re.sub(r"\s|`", "", s)  # noqa: E731 - fences may be added, whitespace may move
    assert strip("".join(parts)) == strip(text)
