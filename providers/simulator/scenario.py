"""What one simulated request should produce: directives, deterministic text, token counts.

Everything here is a pure function of the request, so the same request always yields the same
words and counts; the wire modules only format the result.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Fixed and plain so that generated answers are readable in demos and stable across releases.
_WORDS = """
    alpha amber anchor apple arrow autumn basil beacon birch bloom breeze bridge cedar
    cinder clover comet copper coral crane crystal dawn delta ember falcon fern field flint
    forest garden glacier harbor hazel horizon island ivory juniper lantern lemon linen
    maple meadow mirror moss nectar ocean olive orbit pebble pepper pine prairie quartz
    raven ribbon river saffron signal silver spruce summit thistle timber velvet willow
"""
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())

FAULTS = frozenset(
    {
        "429",
        "500",
        "503",
        "overloaded",
        "inband_error",
        "reset",
        "malformed",
        "slow_first",
        "stall",
        "no_usage",
        "zero_usage",
    }
)
# Faults that strike a stream after `sim:after` chunks (Anthropic adds `overloaded`).
MIDSTREAM_FAULTS = frozenset({"inband_error", "reset", "malformed", "stall"})
SLOW_FIRST_DEFAULT = 5.0

_INT_KEYS = frozenset({"chunks", "chunk_size", "after", "fail_times"})
_FLOAT_KEYS = frozenset({"first_token_delay", "delay", "retry_after"})
_NUMBER_KEYS = _INT_KEYS | _FLOAT_KEYS
_STR_KEYS = frozenset({"fault", "fault_key"})
_FLAG_KEYS = frozenset({"echo"})

_DIRECTIVE = re.compile(r"(?<!\S)sim:(\S+)")
_DIRECTIVE_WITH_SPACE = re.compile(r"(?<!\S)sim:\S+\s*")
_WORD_WITH_SPACE = re.compile(r"\S+\s*")


class DirectiveError(ValueError):
    """A `sim:` token the simulator does not understand; answered with the provider's 400."""


@dataclass(frozen=True, slots=True)
class Scenario:
    pieces: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    truncated: bool
    fault: str | None
    after: int
    retry_after: float
    first_token_delay: float
    slow_first_delay: float
    delay: float
    fail_times: int | None
    fault_key: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def retry_after_header(self) -> str:
        return (
            str(int(self.retry_after)) if self.retry_after.is_integer() else str(self.retry_after)
        )

    def pieces_before(self, fault: str | None, midstream: frozenset[str]) -> tuple[str, ...]:
        """The chunks to send before `fault` strikes (all of them when it is not a stream fault)."""
        if fault in midstream:
            return self.pieces[: self.after]
        return self.pieces

    def first_delay(self, fault: str | None) -> float:
        """Seconds before the first token, given the fault actually applied to this request
        (with `fail_times`, a request past its failures is not slow)."""
        return self.slow_first_delay if fault == "slow_first" else self.first_token_delay

    def total_delay(self, fault: str | None) -> float:
        """How long the whole answer takes, so a non-stream call costs what its stream would."""
        return self.first_delay(fault) + self.delay * max(len(self.pieces) - 1, 0)


def content_text(content: object) -> str:
    """Text of a message `content`: a string, or a list of parts/blocks with a `text` field."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _number(key: str, raw: str, token: str) -> int | float:
    try:
        value: float = int(raw) if key in _INT_KEYS else float(raw)
    except ValueError:
        value = -1
    if not 0 <= value < math.inf:  # also rejects NaN
        raise DirectiveError(f"invalid value in simulator directive 'sim:{token}'")
    return value


def parse_directives(text: str) -> dict[str, str | int | float | bool]:
    """`sim:key=value` / `sim:flag` tokens of `text`, typed. Unknown or invalid → DirectiveError."""
    found: dict[str, str | int | float | bool] = {}
    for token in _DIRECTIVE.findall(text):
        key, has_value, raw = token.partition("=")
        if key in _FLAG_KEYS and not has_value:
            found[key] = True
        elif key in _STR_KEYS and raw:
            found[key] = raw
        elif key in _NUMBER_KEYS and has_value:
            found[key] = _number(key, raw, token)
        else:
            raise DirectiveError(f"unknown simulator directive 'sim:{token}'")
    fault = found.get("fault")
    if fault is not None and fault not in FAULTS:
        raise DirectiveError(
            f"unknown simulator fault '{fault}' (known: {', '.join(sorted(FAULTS))})"
        )
    if found.get("chunk_size") == 0:
        raise DirectiveError("sim:chunk_size must be at least 1")
    return found


def count_words(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)


def request_seed(contents: Sequence[str]) -> str:
    # Record separator between messages, so ["a b", "c"] and ["a", "b c"] seed differently.
    return hashlib.sha256("\x1e".join(contents).encode("utf-8")).hexdigest()


def deterministic_words(seed: str, count: int) -> list[str]:
    return random.Random(int(seed, 16)).choices(VOCABULARY, k=count)


def strip_directives(text: str) -> str:
    return _DIRECTIVE_WITH_SPACE.sub("", text).strip()


def build_scenario(
    contents: Sequence[str],
    last_user: str,
    max_tokens: int | None,
    *,
    default_delay: float = 0.0,
    default_first_token_delay: float = 0.0,
) -> Scenario:
    """Plan a response. `contents`: every message's text in order (system included);
    `last_user`: the text of the last user message, where directives live."""
    directives = parse_directives(last_user)
    seed = request_seed(contents)
    chunk_size = int(directives.get("chunk_size", 1))

    if directives.get("echo"):
        words = _WORD_WITH_SPACE.findall(strip_directives(last_user))
    else:
        chunks = int(directives.get("chunks", 12))
        words = [word + " " for word in deterministic_words(seed, chunks * chunk_size)]

    truncated = max_tokens is not None and len(words) > max(max_tokens, 0)
    if truncated:
        words = words[: max(max_tokens or 0, 0)]
    if words:
        words[-1] = words[-1].rstrip()
    pieces = tuple("".join(words[i : i + chunk_size]) for i in range(0, len(words), chunk_size))

    fault = directives.get("fault")
    explicit_first = directives.get("first_token_delay")
    fail_times = directives.get("fail_times")
    return Scenario(
        pieces=pieces,
        input_tokens=count_words(contents),
        output_tokens=len(words),
        truncated=truncated,
        fault=str(fault) if fault is not None else None,
        after=int(directives.get("after", 3)),
        retry_after=float(directives.get("retry_after", 1.0)),
        first_token_delay=float(
            explicit_first if explicit_first is not None else default_first_token_delay
        ),
        slow_first_delay=float(
            explicit_first if explicit_first is not None else SLOW_FIRST_DEFAULT
        ),
        delay=float(directives.get("delay", default_delay)),
        fail_times=int(fail_times) if fail_times is not None else None,
        # Without an explicit key, identical requests share a counter: a retry is the same request.
        fault_key=str(directives.get("fault_key", seed)),
    )
