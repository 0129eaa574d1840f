"""Tiny Hugging Face model folders built here, from a config and a tokenizer trained on a few
words: real folders as transformers writes them, with no download."""

from __future__ import annotations

import functools
import io
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

WORDS = "one two three four five six seven eight nine ten eleven twelve"


def tiny_llama_folder(target: Path) -> Path:
    """A 2-layer Llama (hidden size 64) with a byte-level BPE tokenizer, saved as safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([WORDS] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
    )  # fmt: skip
    target.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    fast.save_pretrained(target)
    return target


@functools.cache
def tiny_llama_zip() -> bytes:
    """A tiny Llama folder as a zip, built once per test run."""
    with tempfile.TemporaryDirectory() as scratch:
        return zipped(tiny_llama_folder(Path(scratch) / "llama"))


def zipped(folder: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tarred(folder: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.add(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target
