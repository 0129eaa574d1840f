"""tiny-char-lm: the built-in base model of customization jobs.

A byte-level language model (embedding, one GRU layer, a linear head over 256 byte values plus a
separator and an end token) that learns to write a record's completion after its prompt. The
vocabulary is fixed, so a checkpoint trained on one dataset can be customized again on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

SEP = 256  # between prompt and completion
EOS = 257  # after the completion
VOCAB = 258
IGNORE = -100  # target positions that carry no loss (the prompt, padding)
MAX_PROMPT_BYTES = 256
MAX_COMPLETION_BYTES = 256
CHECKPOINT_FORMAT = "model-job-hub/tiny-char-lm"


@dataclass(frozen=True)
class CharLMConfig:
    vocab: int = VOCAB
    embedding: int = 48
    hidden: int = 128


class CharLM(nn.Module):
    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.embedding)
        self.gru = nn.GRU(config.embedding, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embed(tokens))
        logits: torch.Tensor = self.head(hidden)
        return logits


def encode(prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(inputs, targets) for one record: the loss falls on the completion and the end token."""
    prompt_bytes = list(prompt.encode())[-MAX_PROMPT_BYTES:]
    completion_bytes = list(completion.encode())[:MAX_COMPLETION_BYTES]
    sequence = [*prompt_bytes, SEP, *completion_bytes, EOS]
    inputs, targets = sequence[:-1], sequence[1:]
    targets[: len(prompt_bytes)] = [IGNORE] * len(prompt_bytes)
    return inputs, targets


def batch(records: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(inputs) for inputs, _ in records)
    tokens = torch.full((len(records), length), EOS, dtype=torch.long)
    targets = torch.full((len(records), length), IGNORE, dtype=torch.long)
    for row, (inputs, target) in enumerate(records):
        tokens[row, : len(inputs)] = torch.tensor(inputs)
        targets[row, : len(target)] = torch.tensor(target)
    return tokens, targets


def loss_of(model: CharLM, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


@torch.no_grad()
def complete(model: CharLM, prompt: str, max_bytes: int = 64) -> str:
    """Greedy completion of a prompt, for the training log."""
    tokens = [*list(prompt.encode())[-MAX_PROMPT_BYTES:], SEP]
    produced: list[int] = []
    for _ in range(max_bytes):
        logits = model(torch.tensor([tokens]))[0, -1, : SEP + 2]
        token = int(logits.argmax())
        if token >= SEP:
            break
        produced.append(token)
        tokens.append(token)
    return bytes(produced).decode(errors="replace")


def save_checkpoint(model: CharLM, path: Path, extra: dict[str, Any]) -> None:
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(model.config),
            "state_dict": model.state_dict(),
            **extra,
        },
        path,
    )


def load_checkpoint(path: Path) -> CharLM:
    """A model from a checkpoint this module saved; ValueError says what is wrong otherwise."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"not a PyTorch checkpoint ({type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not a tiny-char-lm checkpoint made by this hub")
    model = CharLM(CharLMConfig(**data["config"]))
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"its weights do not fit tiny-char-lm: {str(error).splitlines()[0]}"
        ) from None
    return model


def export_onnx(model: CharLM, path: Path) -> torch.Tensor:
    """Write the model as ONNX (tokens → logits, batch and length dynamic); returns the probe
    input used, for verification."""
    import warnings

    probe = torch.tensor([[*b"12", SEP, *b"tw"]] * 2)
    model.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one, which needs
        # onnxscript and takes 3-7 s per export instead of 0.1 s; both give the same graph here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (probe,),
            str(path),
            dynamo=False,
            input_names=["tokens"],
            output_names=["logits"],
            dynamic_axes={"tokens": {0: "batch", 1: "length"}, "logits": {0: "batch", 1: "length"}},
            opset_version=17,
        )
    return probe
