"""What a fine-tuned model is checked and shown by: sample completions before and after
training, and the ONNX export of the merged model checked against PyTorch with onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.domain.sft_data import (
    CHAT,
    PREFERENCE,
    PROMPT_ANSWER,
    answer_text,
    preference_pair,
    prompt_text,
    row_format,
)

SAMPLE_ROWS = 3
SAMPLE_TOKENS = 32
ONNX_TOLERANCE = 1e-3


def sample_prompts(records: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, str]]:
    """Up to three validation rows as (prompt text, expected completion)."""
    prompts = []
    for record in records[:SAMPLE_ROWS]:
        kind = row_format(record)
        if kind == CHAT:
            messages = record["messages"]
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            text = tokenizer.apply_chat_template(
                messages[:last], tokenize=False, add_generation_prompt=True
            )
            shown = messages[last - 1]["content"] if last else ""
            prompts.append(
                {"prompt": str(text), "shown": shown, "expected": messages[last]["content"]}
            )
        elif kind == PREFERENCE:  # what it should say: the chosen answer
            prompt, chosen, _ = preference_pair(record)
            shown = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            prompts.append(
                {"prompt": prompt_text(tokenizer, prompt), "shown": shown, "expected": chosen}
            )
        else:
            expected = answer_text(record) if kind == PROMPT_ANSWER else record["completion"]
            prompts.append(
                {"prompt": record["prompt"], "shown": record["prompt"], "expected": expected}
            )
    return prompts


def complete(model: Any, tokenizer: Any, prompts: list[dict[str, str]]) -> list[str]:
    """Greedy, short completions of each prompt."""
    import torch

    outputs = []
    model.eval()
    for prompt in prompts:
        ids = tokenizer(prompt["prompt"], add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
            ids = [tokenizer.bos_token_id, *ids]
        inputs = torch.tensor([ids], device=model.device)
        with torch.no_grad():
            generated = model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=SAMPLE_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        outputs.append(tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True).strip())
    return outputs


class _LogitsOnly:
    """A module whose one output is the logits (no cache objects for the exporter)."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class LogitsOnly(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
                return self.model(input_ids=input_ids, use_cache=False).logits

        return LogitsOnly().eval()


PROTOBUF_LIMIT = 2**31 - 2**26  # 2 GiB less room for the graph itself


def external_data(model: Any) -> bool:
    return sum(p.numel() * 4 for p in model.parameters()) > PROTOBUF_LIMIT


@dataclass
class OnnxCheck:
    path: Path
    largest_difference: float


def export_onnx(model: Any, target: Path, vocab_size: int) -> OnnxCheck:
    """Export with torch.onnx (dynamo), inputs ``input_ids`` [batch, sequence] → ``logits``,
    then run it in onnxruntime on a random probe of another shape and compare with PyTorch."""
    import logging

    import onnxruntime as ort
    import torch

    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # one INFO line per graph rewrite
        logging.getLogger(name).setLevel(logging.WARNING)
    wrapped = _LogitsOnly.wrap(model.to(torch.float32))
    example = torch.randint(0, vocab_size, (2, 8))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    torch.onnx.export(
        wrapped,
        (example,),
        str(target),
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": dims},
        dynamo=True,
        verbose=False,
        # One file while protobuf allows it (2 GiB); a bigger model's weights go beside it.
        external_data=external_data(model),
    )
    probe = torch.randint(0, vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wrapped(probe).numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["logits"], {"input_ids": probe.numpy()})
    difference = float(np.max(np.abs(actual - expected)))
    if actual.shape != expected.shape or not difference <= ONNX_TOLERANCE:
        raise ValueError(
            f"the ONNX export does not reproduce PyTorch's logits (largest difference "
            f"{difference:.2e}, allowed {ONNX_TOLERANCE:g})"
        )
    return OnnxCheck(target, difference)
