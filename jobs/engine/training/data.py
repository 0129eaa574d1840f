"""The training and validation rows as torch datasets, tokenized lazily: a dataset holds the
byte offsets of its lines in the stored JSONL file (8 bytes a row) and reads and tokenizes a
row when the data loader asks for it, so memory does not grow with the dataset.

With sequence packing (jobs.domain.packing) the training rows are grouped into sequences of at
most ``max_seq_length`` tokens; each row's positions start again at 0, which is how the model
keeps rows apart (no attention mask is passed, so transformers derives one block per row)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from jobs.domain.packing import pack
from jobs.domain.sft_data import IGNORE, Tokenizer, encode

# The batch's key for (row tokens, tokens computed): counted by the trainer, never a model input.
TOKENS = "hub_tokens"


def line_offsets(path: Path) -> list[int]:
    """Offsets of the non-blank lines."""
    offsets, position = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                offsets.append(position)
            position += len(raw)
    return offsets


def split(offsets: list[int], kept: int, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) offsets: shuffled with the job's seed, the first ``kept`` train."""
    order = list(offsets)
    random.Random(seed).shuffle(order)
    return order[:kept], order[kept:]


class Rows(torch.utils.data.Dataset[dict[str, list[int]]]):
    def __init__(
        self, path: Path, offsets: list[int], tokenizer: Tokenizer, max_length: int
    ) -> None:
        self.path, self.offsets = path, offsets
        self.tokenizer, self.max_length = tokenizer, max_length
        self._handle: Any = None

    def __len__(self) -> int:
        return len(self.offsets)

    def record(self, index: int) -> dict[str, Any]:
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(self.offsets[index])
        record: dict[str, Any] = json.loads(self._handle.readline())
        return record

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        # Rows over the limit were refused at submit unless the job truncates them.
        encoded = encode(self.tokenizer, self.record(index), self.max_length, truncate=True)
        assert encoded is not None
        return {"input_ids": encoded.input_ids, "labels": encoded.labels}

    def __getstate__(self) -> dict[str, Any]:  # data loader workers open their own handle
        return {**self.__dict__, "_handle": None}


class PackedRows(torch.utils.data.Dataset[dict[str, list[int]]]):
    """The rows of ``rows`` packed into sequences of at most ``capacity`` tokens. Packing needs
    every row's length: the rows are tokenized once here (kept: 4 bytes a row), then again as
    the loader reads them, as unpacked rows are."""

    def __init__(self, rows: Rows, capacity: int, seed: int) -> None:
        self.rows = rows
        lengths = [len(rows[index]["input_ids"]) for index in range(len(rows))]
        self.bins = pack(lengths, capacity, seed)
        self.tokens = sum(lengths)

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for row in self.bins[index]:
            encoded = self.rows[row]
            ids += encoded["input_ids"]
            # A row's first token is never predicted (nothing comes before it): unpacked, the
            # shift of the loss drops it; packed, it would be predicted from the row before.
            labels += [IGNORE, *encoded["labels"][1:]]
            positions += range(len(encoded["input_ids"]))
        return {"input_ids": ids, "labels": labels, "position_ids": positions}


class Collator:
    """Pads a batch on the right: pad token for inputs, ignored label, mask 0. Packed sequences
    get no mask: their padding is one more "row" (positions from 0) that no label counts.
    Every batch carries under ``TOKENS`` its row tokens and the tokens it computes."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        ids = [row["input_ids"] + [self.pad_id] * (width - len(row["input_ids"])) for row in rows]
        labels = [row["labels"] + [IGNORE] * (width - len(row["labels"])) for row in rows]
        real = sum(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            TOKENS: torch.tensor([real, width * len(rows)]),
        }
        if "position_ids" in rows[0]:
            batch["position_ids"] = torch.tensor(
                [
                    row["position_ids"] + list(range(width - len(row["position_ids"])))
                    for row in rows
                ]
            )
        else:
            batch["attention_mask"] = torch.tensor(
                [
                    [1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"]))
                    for row in rows
                ]
            )
        return batch
