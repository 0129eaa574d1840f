"""Verifiable rewards for GRPO (``grpo.reward``): a completion is scored 1 or 0 against its row's
``answer`` (jobs.domain.sft_data's prompt/answer rows), by one rule named per job:

- ``{"kind": "exact_match"}``: the completion, stripped of surrounding space, is the answer
  (``"case_sensitive": false`` compares case-folded);
- ``{"kind": "number", "tolerance": 0.01}``: the first number in the completion is within
  ``tolerance`` of the answer read as a number;
- ``{"kind": "regex", "pattern": "..."}``: the completion matches the pattern (``re.search``
  semantics; ``{answer}`` in the pattern stands for the row's answer, escaped).

Patterns come from users: they are compiled at submit (a bad one is refused naming the error)
and matched with the ``regex`` module under a time limit per completion, so a pattern that
backtracks without end costs a worker milliseconds, not the job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import regex

KINDS = ("exact_match", "number", "regex")
MATCH_SECONDS = 0.05  # per completion; a pattern that takes longer scores 0
NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class RewardError(ValueError):
    """A reward rule that cannot score; the message names what is wrong."""


@dataclass(frozen=True)
class Reward:
    kind: str
    tolerance: float = 0.0
    pattern: str = ""
    case_sensitive: bool = True

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "number":
            return {"kind": self.kind, "tolerance": self.tolerance}
        if self.kind == "regex":
            return {"kind": self.kind, "pattern": self.pattern}
        return {"kind": self.kind, "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        if self.kind == "number":
            return f"the first number within {self.tolerance:g} of the answer"
        if self.kind == "regex":
            return f"matches /{self.pattern}/"
        return "exactly the answer" + ("" if self.case_sensitive else " (any case)")

    def score(self, completion: str, answer: str) -> float:
        if self.kind == "exact_match":
            got, want = completion.strip(), answer.strip()
            if not self.case_sensitive:
                got, want = got.casefold(), want.casefold()
            return 1.0 if got == want else 0.0
        if self.kind == "number":
            found = NUMBER.search(completion)
            try:
                expected = float(answer)
            except ValueError:
                return 0.0
            if not found:
                return 0.0
            value = float(found.group())
            return 1.0 if math.isfinite(value) and abs(value - expected) <= self.tolerance else 0.0
        pattern = self.pattern.replace("{answer}", regex.escape(answer))
        try:
            return 1.0 if regex.search(pattern, completion, timeout=MATCH_SECONDS) else 0.0
        except TimeoutError:
            return 0.0


def parse_reward(value: object) -> Reward:
    """A reward rule from a job's ``grpo.reward``; RewardError naming what is wrong."""
    if not isinstance(value, dict) or value.get("kind") not in KINDS:
        raise RewardError(
            "grpo.reward must be an object with a kind: "
            + ", ".join(repr(k) for k in KINDS)
            + ' (for example {"kind": "exact_match"}).'
        )
    kind = value["kind"]
    allowed = {
        "exact_match": {"kind", "case_sensitive"},
        "number": {"kind", "tolerance"},
        "regex": {"kind", "pattern"},
    }[kind]
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise RewardError(
            f"grpo.reward of kind {kind!r} takes {', '.join(sorted(allowed))}; not "
            f"{', '.join(unknown)}."
        )
    if kind == "number":
        tolerance = value.get("tolerance", 0.0)
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise RewardError(f"grpo.reward.tolerance must be a number ≥ 0, not {tolerance!r}.")
        return Reward(kind, tolerance=float(tolerance))
    if kind == "regex":
        pattern = value.get("pattern")
        if not isinstance(pattern, str) or not pattern or len(pattern) > 1000:
            raise RewardError(
                "grpo.reward.pattern must be a regular expression of 1 to 1000 characters."
            )
        try:
            regex.compile(pattern.replace("{answer}", "answer"))
        except regex.error as error:
            raise RewardError(
                f"grpo.reward.pattern is not a valid regular expression: {error}."
            ) from None
        return Reward(kind, pattern=pattern)
    case = value.get("case_sensitive", True)
    if not isinstance(case, bool):
        raise RewardError(f"grpo.reward.case_sensitive must be true or false, not {case!r}.")
    return Reward(kind, case_sensitive=case)
