"""The JSON nesting guard (``receive.json_too_deep``, run on every request body) answers what its
per-bracket form answered before it was moved to C (issue 17 §2), on texts made to trip it up: brackets
inside strings, escaped quotes and backslashes, an unpaired quote, closers before openers, depth exactly
at the limit."""

from __future__ import annotations

import random
import re

from carbonflow.center.ingest.receive import JSON_NESTING_LIMIT, json_too_deep

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def reference(raw: bytes | str, limit: int = JSON_NESTING_LIMIT) -> bool:
    """The guard as it was (main 17b44f3)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _STRING.sub(b'""', data).translate(None, bytes(range(256)).translate(None, b"[]{}")):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


CASES = [
    nested(32),
    nested(33),
    '{"a":' * 32 + "1" + "}" * 32,
    '{"a":' * 33 + "1" + "}" * 33,
    '["' + "[" * 100 + '"]',  # brackets in a string
    '["\\"' + "[" * 100 + '"]',  # after an escaped quote, still in the string
    '["\\\\"' + "[" * 100 + "]",  # an escaped backslash ends the string: the brackets count
    '"' + "[" * 40,  # an unpaired quote: the brackets after it are not in a string
    '["a", "b"' + "[" * 40,
    "]" * 50 + "[" * 40,
    "]" * 10 + "[" * 40,
    '{"readings":[' + ",".join(f'{{"p":"M1/{k}","v":"1.{k}"}}' for k in range(500)) + "]}",
    nested(33, '"\ud800"'),  # a lone surrogate in str input
]


def test_the_guard_answers_as_before_on_crafted_texts():
    for text in CASES:
        for raw in (text, text.encode("utf-8", "surrogatepass")):
            assert json_too_deep(raw) == reference(raw), text[:60]
            assert json_too_deep(raw, 5) == reference(raw, 5), text[:60]
    assert json_too_deep(nested(33)) and not json_too_deep(nested(32))


def test_the_guard_answers_as_before_on_random_texts():
    rng = random.Random(17)
    alphabet = '[]{}"\\a,:'
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120)))
        for limit in (0, 1, 3, 8):
            assert json_too_deep(text, limit) == reference(text, limit), (text, limit)
