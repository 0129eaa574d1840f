"""Base models the hub offers to every user, by name: the built-in ``tiny-llama`` (made on this
machine the first time it is needed, no download) and every Hugging Face model folder under the
operator's ``HUB_MODEL_DIRS`` (a folder with ``config.json``, or a Hugging Face cache, whose
``models--Org--Name/snapshots/<revision>/`` folders are offered as ``Org/Name``). A folder is
checked like an upload (jobs.domain.hf_models.describe) before it is offered.

Also here: which modules LoRA adapts by default for each architecture.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.domain.numbers import number_in_words

logger = logging.getLogger(__name__)

BUILTIN_NAME = "tiny-llama"
BUILTIN_DESCRIPTION = (
    "A 2-layer Llama-architecture model (hidden size 64, 115k parameters) with a BPE tokenizer "
    "and a chat template, made on this machine at first start (no download) and pre-trained "
    "for a few seconds on counting in words: small enough to fine-tune on two CPU cores in "
    "seconds. The demo teaches it, with LoRA, to answer a number in digits with its words."
)
# Words the built-in tokenizer learns its merges from: the demo's vocabulary and some more.
_TOKENIZER_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand and the a of to is in it you that was for on are with as I his "
    "they be at have this from or had by word but what some we can out other were all there "
    "when up use your how said an each she which do their time if will way about many then "
    "them write would like so these her long make thing see him two has look more day could go "
    "come did number sound no most people my over know water than call first who may down side "
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 user assistant system"
)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# LoRA targets by model_type when the job names none: the attention and MLP projections.
_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS: dict[str, list[str]] = {
    "llama": _PROJECTIONS,
    "mistral": _PROJECTIONS,
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": _PROJECTIONS,
    "qwen3": _PROJECTIONS,
    "gemma": _PROJECTIONS,
    "gemma2": _PROJECTIONS,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


def lora_targets(model_type: str) -> list[str] | str:
    """The default LoRA targets; peft's "all-linear" (every linear layer but the output head)
    for an architecture not listed."""
    return LORA_TARGETS.get(model_type, "all-linear")


@dataclass(frozen=True)
class ServerModel:
    name: str
    folder: Path
    description: str
    metadata: dict[str, Any]
    builtin: bool = False


def builtin_folder() -> Path:
    return Path(settings.HUB_BUILTIN_MODEL_DIR) / BUILTIN_NAME


def build_tiny_llama(target: Path, *, seed: int = 0) -> Path:
    """Write the built-in model's folder: config, safetensors weights (seeded random init),
    tokenizer with a chat template. Written beside ``target`` and renamed, so a folder that
    exists is whole."""
    import shutil
    import tempfile

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_TOKENIZER_TEXT] * 8, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _read_counting(model, fast, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        fast.save_pretrained(staging)
        if target.exists():  # another process finished first: keep theirs
            return target
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _counting_text(rng: random.Random) -> str:
    start = rng.randrange(0, 990)
    return ", ".join(number_in_words(start + i) for i in range(rng.randrange(3, 8))) + "."


def _read_counting(model: Any, tokenizer: Any, seed: int, steps: int = 300) -> None:
    """A few seconds of pre-training on counting in words ("one hundred and six, one hundred
    and seven, …"), so the built-in model knows some language the way a real base model does,
    and a LoRA adapter has something to adapt. Done once, when the model is made."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = [
            tokenizer(_counting_text(rng))["input_ids"] + [tokenizer.eos_token_id]
            for _ in range(16)
        ]
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
        labels = torch.tensor([row + [-100] * (width - len(row)) for row in rows])
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def ensure_builtin() -> Path:
    folder = builtin_folder()
    if not (folder / "config.json").exists():
        logger.info("Creating the built-in model %s in %s", BUILTIN_NAME, folder)
        build_tiny_llama(folder)
    return folder


def _cache_name(folder: Path) -> str | None:
    """``Org/Name`` for a snapshot folder of a Hugging Face cache, else None."""
    parts = folder.parts
    for index in range(len(parts) - 2):
        if parts[index].startswith("models--") and parts[index + 1] == "snapshots":
            return "/".join(parts[index].removeprefix("models--").split("--"))
    return None


def _operator_folders() -> dict[str, Path]:
    """Model folders under HUB_MODEL_DIRS by name; in a cache, the snapshot refs/main names."""
    found: dict[str, Path] = {}
    for root in settings.HUB_MODEL_DIRS:
        base = Path(root)
        if not base.is_dir():
            logger.warning("HUB_MODEL_DIRS names %s, which is not a folder", base)
            continue
        for config in sorted(base.glob("**/config.json")):
            folder = config.parent
            if any(part.startswith(".") for part in folder.relative_to(base).parts):
                continue
            name = _cache_name(folder)
            if name is not None:
                ref = folder.parent.parent / "refs" / "main"
                if ref.exists() and ref.read_text().strip() != folder.name and name in found:
                    continue
            else:
                relative = folder.relative_to(base)
                name = relative.as_posix() if relative.parts else base.name
            found[name] = folder
    return found


# One description at a time: two requests of a web process's threads describing at once would
# import transformers at once, and its lazy module then fails one of them ("cannot import name
# 'AutoConfig'"), a 500 measured with "Try it"'s side-by-side prompts.
_describing = threading.Lock()


def _described(folder: str, stamp: float) -> dict[str, Any] | str:
    """The folder's description, or why it cannot be offered (cached while unchanged)."""
    with _describing:
        return _described_once(folder, stamp)


@lru_cache(maxsize=256)
def _described_once(folder: str, stamp: float) -> dict[str, Any] | str:
    from jobs.domain.hf_models import describe

    try:
        return describe(Path(folder), Path(folder).name)
    except ValidationError as error:
        return "; ".join(error.messages)


def server_models() -> dict[str, ServerModel]:
    """Every base model offered by name, the built-in first. A folder under HUB_MODEL_DIRS
    that fails the upload checks is left out, with a warning in the log."""
    offered: dict[str, ServerModel] = {}
    builtin = ensure_builtin()
    for name, folder, builtin_flag in [
        (BUILTIN_NAME, builtin, True),
        *((n, f, False) for n, f in _operator_folders().items()),
    ]:
        config = folder / "config.json"
        description = _described(str(folder), config.stat().st_mtime)
        if isinstance(description, str):
            logger.warning("Not offering the model folder %s: %s", folder, description)
            continue
        text = BUILTIN_DESCRIPTION if builtin_flag else _summary(description)
        offered[name] = ServerModel(name, folder, text, description, builtin_flag)
    return offered


def _summary(metadata: dict[str, Any]) -> str:
    parameters = metadata.get("parameters") or 0
    size = f"{parameters / 1e9:.1f}B" if parameters >= 1e9 else f"{parameters / 1e6:.0f}M"
    return (
        f"{metadata.get('architecture')} ({size} parameters, {metadata.get('dtype')}), offered "
        "by this hub's operator."
    )


def server_model(name: str) -> ServerModel:
    """The offered model of that name, or a ValidationError listing the names there are."""
    offered = server_models()
    if name not in offered:
        known = ", ".join(sorted(offered))
        raise ValidationError({"model": f"No base model {name!r} on this hub; offered: {known}."})
    return offered[name]


def chat_template_of(folder: Path) -> str | None:
    """The tokenizer's chat template, read from its config without loading it."""
    config = folder / "tokenizer_config.json"
    template_file = folder / "chat_template.jinja"
    if template_file.exists():
        return template_file.read_text()
    if config.exists():
        template = json.loads(config.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None
