"""Training rows: what a dataset line may hold, and how it becomes tokens.

Four formats, one per dataset (every line alike):

- ``prompt_completion``: ``{"prompt": "...", "completion": "..."}``; the loss counts the
  completion's tokens (and the end-of-sequence token after it), never the prompt's.
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, …]}``,
  rendered with the model's own chat template; the loss counts the assistant turns.
- ``preference`` (DPO): ``{"prompt": ..., "chosen": "...", "rejected": "..."}``, or NeMo's names
  ``chosen_response`` and ``rejected_response``; the prompt is a string or chat ``messages``.
- ``prompt_answer`` (GRPO): ``{"prompt": ..., "answer": ...}``: the answer a completion is scored
  against (a string or a number), never trained on directly.

A row longer than ``max_seq_length`` tokens is refused or truncated as the job's
``overlong_rows`` says; ``length_report`` counts such rows for the refusal message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

IGNORE = -100  # the label transformers' losses skip
PROMPT_COMPLETION = "prompt_completion"
CHAT = "chat"
PREFERENCE = "preference"
PROMPT_ANSWER = "prompt_answer"
# The formats each training type learns from (jobs.domain.hyperparameters' training_type).
FORMATS_OF_TRAINING = {
    "sft": (PROMPT_COMPLETION, CHAT),
    "distillation": (PROMPT_COMPLETION, CHAT),
    "dpo": (PREFERENCE,),
    "grpo": (PROMPT_ANSWER,),
}
# Each preference field by the hub's (TRL's) name and NeMo Customizer's.
PREFERENCE_NAMES = {"chosen": "chosen_response", "rejected": "rejected_response"}
ROLES = ("system", "user", "assistant", "tool")


class RowError(ValueError):
    """A line that is not a row of either format; the message says what is wrong with it."""


def _check_messages(messages: object, name: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise RowError(f"{name!r} must be a non-empty list of {{role, content}} objects")
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise RowError(
                f"{name}[{index}] must be an object with a role ({', '.join(ROLES)}) and "
                "string content"
            )
    return messages


def _text(record: dict[str, Any], name: str, also: str | None = None) -> str:
    value = record.get(name, record.get(also) if also else None)
    if not isinstance(value, str) or not value:
        named = f"{name!r} (or {also!r})" if also else repr(name)
        raise RowError(f"{named} must be a non-empty string")
    return value


def preference_pair(record: dict[str, Any]) -> tuple[str | list[dict[str, str]], str, str]:
    """(prompt, chosen, rejected) of a preference row, by either naming; RowError if it is
    not one. The prompt is a string or chat messages ending before the answer."""
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        prompt = _check_messages(prompt, "prompt")
        if prompt[-1]["role"] == "assistant":
            raise RowError("a preference row's prompt messages must end before the answer")
    elif not isinstance(prompt, str) or not prompt:
        raise RowError("'prompt' must be a non-empty string or a list of chat messages")
    chosen = _text(record, "chosen", PREFERENCE_NAMES["chosen"])
    rejected = _text(record, "rejected", PREFERENCE_NAMES["rejected"])
    return prompt, chosen, rejected


def answer_text(record: dict[str, Any]) -> str:
    """A prompt/answer row's answer as text (a number as JSON writes it)."""
    answer = record.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float) or answer == "":
        raise RowError("'answer' must be a non-empty string or a number")
    return answer if isinstance(answer, str) else json.dumps(answer)


def row_format(record: object) -> str:
    """The format of one parsed line, or RowError naming what is wrong."""
    if not isinstance(record, dict):
        raise RowError("expected a JSON object")
    if "messages" in record:
        messages = _check_messages(record["messages"], "messages")
        if not any(m["role"] == "assistant" for m in messages):
            raise RowError("a chat row needs at least one assistant message to learn from")
        return CHAT
    if any(k in record for pair in PREFERENCE_NAMES.items() for k in pair):
        preference_pair(record)
        return PREFERENCE
    if "answer" in record:
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise RowError("'prompt' must be a non-empty string")
        answer_text(record)
        return PROMPT_ANSWER
    for name in ("prompt", "completion"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise RowError(
                f"{name!r} must be a non-empty string (or give 'messages' for a chat row)"
            )
    return PROMPT_COMPLETION


class Tokenizer(Protocol):
    """What is used of a transformers tokenizer (a protocol, so the domain needs no import)."""

    bos_token_id: int | None
    eos_token_id: int | None
    chat_template: str | None

    def __call__(self, text: str, **kwargs: Any) -> Any: ...
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    full_length: int  # before any truncation

    @property
    def learned_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def _prompt_completion(tokenizer: Tokenizer, record: dict[str, Any]) -> Encoded:
    return _pair(tokenizer, record["prompt"], record["completion"])


def _pair(tokenizer: Tokenizer, prompt_text: str, completion_text: str) -> Encoded:
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = head + prompt + completion + tail
    labels = [IGNORE] * (len(head) + len(prompt)) + completion + tail
    return Encoded(ids, labels, len(ids))


def _render(tokenizer: Tokenizer, messages: list[dict[str, str]], generation: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    return str(text)


def _chat(tokenizer: Tokenizer, record: dict[str, Any]) -> Encoded:
    """Tokens of the rendered conversation, labelled where the characters belong to an
    assistant turn: each turn is the text the template adds between the conversation up to it
    (with the generation prompt) and the conversation including it."""
    messages = record["messages"]
    text = _render(tokenizer, messages, generation=False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:index], generation=True)) if index else 0
        end = len(_render(tokenizer, messages[: index + 1], generation=False))
        spans.append((start, end))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [
        token if any(s <= begin < e for s, e in spans) else IGNORE
        for token, (begin, _) in zip(ids, encoding["offset_mapping"], strict=True)
    ]
    return Encoded(ids, labels, len(ids))


def prompt_text(tokenizer: Tokenizer, prompt: str | list[dict[str, str]]) -> str:
    """A row's prompt as the model reads it: chat messages rendered with its template."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise RowError(
            "the prompt is chat messages, but the model's tokenizer has no chat template to "
            "render them with"
        )
    return _render(tokenizer, prompt, generation=True)


def _whole(tokenizer: Tokenizer, record: dict[str, Any]) -> Encoded:
    """The row's tokens and labels, however long: for a preference row, its prompt with the
    longer of its two answers; for a prompt/answer row, its prompt with the answer (generation
    writes about that much)."""
    kind = row_format(record)
    if kind == CHAT:
        return _chat(tokenizer, record)
    if kind == PREFERENCE:
        prompt, chosen, rejected = preference_pair(record)
        text = prompt_text(tokenizer, prompt)
        pairs = [_pair(tokenizer, text, answer) for answer in (chosen, rejected)]
        return max(pairs, key=lambda e: e.full_length)
    if kind == PROMPT_ANSWER:
        return _pair(tokenizer, record["prompt"], answer_text(record))
    return _prompt_completion(tokenizer, record)


def encode(
    tokenizer: Tokenizer, record: dict[str, Any], max_length: int, truncate: bool
) -> Encoded | None:
    """The row's tokens and labels; None if it is longer than ``max_length`` and not truncated."""
    encoded = _whole(tokenizer, record)
    if encoded.full_length > max_length:
        if not truncate:
            return None
        encoded.input_ids = encoded.input_ids[:max_length]
        encoded.labels = encoded.labels[:max_length]
    return encoded


def records(handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a dataset the hub stored (so already checked line by line)."""
    for number, raw in enumerate(handle, start=1):
        if raw.strip():
            yield number, json.loads(raw)


@dataclass
class LengthReport:
    rows: int = 0
    overlong: int = 0
    first_overlong: list[int] = field(default_factory=list)  # line numbers, at most 5
    longest: int = 0
    no_learned_tokens: int = 0  # rows whose completion truncation cut away entirely

    def describe(self, label: str, max_length: int) -> str:
        lines = ", ".join(str(n) for n in self.first_overlong)
        more = " …" if self.overlong > len(self.first_overlong) else ""
        return (
            f"{label}: {self.overlong} of {self.rows} rows are longer than max_seq_length "
            f"({max_length} tokens with this model's tokenizer; the longest has {self.longest}), "
            f"first on line(s) {lines}{more}. Raise max_seq_length, shorten those rows, or set "
            'overlong_rows to "truncate".'
        )


def length_report(tokenizer: Tokenizer, handle: IO[bytes], max_length: int) -> LengthReport:
    report = LengthReport()
    for number, record in records(handle):
        encoded = _whole(tokenizer, record)
        report.rows += 1
        report.longest = max(report.longest, encoded.full_length)
        if encoded.full_length > max_length:
            report.overlong += 1
            if len(report.first_overlong) < 5:
                report.first_overlong.append(number)
            if not any(label != IGNORE for label in encoded.labels[:max_length]):
                report.no_learned_tokens += 1
    return report


@dataclass(frozen=True)
class FitInput:
    """One dataset a job trains or validates on, as the fit check reads it."""

    field: str  # "dataset" or "validation_dataset": the submit field a refusal names
    label: str  # "Dataset ab12cd (name)"
    public_id: str
    format: str
    open: Any  # () -> a binary file handle of its rows


def fit_problem(
    tokenizer: Any, model_label: str, datasets: list[FitInput], max_length: int | None
) -> tuple[str, str] | None:
    """(field, message) when a dataset does not fit the model (chat rows without a chat template
    to render them; rows longer than ``max_length`` tokens, None when they may be truncated),
    else None. Tokenizing renders every row with the model's template: a worker's work, within
    the job's limits, never the web process's."""
    for dataset in datasets:
        if dataset.format == CHAT and not getattr(tokenizer, "chat_template", None):
            return dataset.field, (
                f"Dataset {dataset.public_id} holds chat messages, but the tokenizer of "
                f"{model_label} has no chat template to render them with. Use prompt/completion "
                "rows, or a model whose tokenizer has a chat template."
            )
    for dataset in datasets:
        with dataset.open() as handle:
            try:
                report = length_report(tokenizer, handle, max_length or 2**31)
            except RowError as error:  # chat prompts without a template to render them
                return dataset.field, f"{dataset.label}: {error} ({model_label})."
        if max_length is not None and report.overlong:
            return dataset.field, report.describe(dataset.label, max_length)
    return None
