"""Sequence packing (``sequence_packing_enabled``): rows share training sequences without seeing
each other, so a packed job learns what an unpacked one learns while computing far less padding;
a model whose attention cannot keep packed rows apart is refused by name."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from django.core.files.base import ContentFile

from jobs.demo import numbers_dataset
from jobs.domain.base_models import ensure_builtin
from jobs.domain.packing import TokenCount, pack
from jobs.domain.status import FailureType, JobStatus
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.hf_samples import tiny_llama_folder, zipped


def test_packing_fills_bins_without_passing_their_capacity_and_keeps_every_row_once():
    lengths = [random.Random(3).randint(1, 40) for _ in range(500)]
    bins = pack(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    fewest = -(-sum(lengths) // 64)
    assert len(bins) <= fewest * 11 / 9 + 1  # best fit decreasing's bound
    assert pack(lengths, 64) == bins  # the same rows give the same sequences
    mixed = pack(lengths, 64, seed=7)  # rows in a shuffled order: unrelated rows together
    assert sorted(i for b in mixed for i in b) == list(range(500)) and mixed != bins
    assert all(sum(lengths[i] for i in b) <= 64 for b in mixed)
    assert len(mixed) <= fewest * 1.1 + 1


def test_a_row_longer_than_a_sequence_cannot_be_packed():
    with pytest.raises(ValueError, match="row 1 has 9 tokens, more than 8"):
        pack([3, 9], 8)


def test_efficiency_is_row_tokens_over_tokens_computed():
    count = TokenCount()
    assert count.efficiency is None
    count.add(30, 40)
    count.add(10, 10)
    assert count.efficiency == pytest.approx(0.8)


def _numbers_rows(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(numbers_dataset(0, count))
    return path


def test_packed_rows_give_each_row_exactly_the_loss_it_has_alone(tmp_path):
    """The attention of one row never reaches another: the summed loss over packed sequences
    equals the summed loss of the rows one at a time."""
    from transformers import AutoModelForCausalLM

    from jobs.engine.training.data import TOKENS, Collator, PackedRows, Rows, line_offsets
    from jobs.engine.training.sft import load_tokenizer

    folder = ensure_builtin()
    tokenizer = load_tokenizer(str(folder))
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    model.config.use_cache = False
    path = _numbers_rows(tmp_path, 40)
    rows = Rows(path, line_offsets(path), tokenizer, 64)
    packed = PackedRows(rows, 64, seed=42)
    assert len(packed) < len(rows) / 3  # several rows a sequence

    def summed_loss(batch: dict[str, torch.Tensor]) -> float:
        batch = {k: v for k, v in batch.items() if k != TOKENS}
        labels = batch.pop("labels")
        with torch.no_grad():
            logits = model(**batch).logits[:, :-1]
        return float(
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
        )

    collate = Collator(tokenizer.pad_token_id)
    alone = sum(summed_loss(collate([rows[i]])) for i in range(len(rows)))
    together = summed_loss(collate([packed[i] for i in range(len(packed))]))
    assert together == pytest.approx(alone, rel=1e-4)
    batch = collate([packed[i] for i in range(len(packed))])
    real, computed = (int(v) for v in batch[TOKENS])
    assert real == packed.tokens and computed == batch["input_ids"].numel()


pytestmark_db = pytest.mark.django_db(transaction=True)


def _job(owner, data, **extra):
    return job_submit_customization(
        owner=owner,
        dataset=data,
        hyperparameters={
            "epochs": 3,
            "learning_rate": 0.005,
            "early_stopping_patience": 0,
            "max_seq_length": 64,
            "lora": {"adapter_dim": 16, "alpha": 32},
            **extra,
        },
    )


@pytestmark_db
def test_a_packed_job_computes_little_padding_and_learns_what_an_unpacked_one_learns(alice):
    """The demo's rows: unpacked in batches of 16 rows, packed in sequences of 64 tokens (about
    five rows each) in batches of 3, so that a step learns from about as many tokens."""
    data = dataset_upload(owner=alice, file=ContentFile(numbers_dataset(0, 200), "n.jsonl"))
    unpacked = factories.run_here(_job(alice, data, batch_size=16))
    packed = factories.run_here(_job(alice, data, batch_size=3, sequence_packing_enabled=True))
    for job in (unpacked, packed):
        assert job.status == JobStatus.READY, job.failure_message
    assert packed.summary["sequence_packing"] is True
    assert packed.summary["packing_efficiency"] >= 0.9
    assert unpacked.summary["packing_efficiency"] < packed.summary["packing_efficiency"]
    assert packed.summary["tokens_per_second"] > 0
    # 180 training rows: ceil(180 / 16) steps an epoch unpacked; packed, the sequences counted.
    assert unpacked.steps_per_epoch == 12
    assert packed.total_steps == packed.steps_completed == 3 * packed.steps_per_epoch
    assert packed.steps_per_epoch < 15
    # Validation is never packed: the same held-out rows, the same measure. The base model's
    # loss is the same; after training they agree within what two runs' noise allows.
    base = [j.metric_series.get(key="val_loss").points.order_by("step")[0].value for j in (
        unpacked, packed)]  # fmt: skip
    assert base[0] == pytest.approx(base[1], rel=1e-5)
    assert packed.val_loss < 0.8 * base[1]
    assert packed.val_loss == pytest.approx(unpacked.val_loss, rel=0.15)
    log = packed.artifacts.get(name="training_log.txt").file.read().decode()
    assert "Sequence packing: 180 training rows" in log and "were rows'" in log


@pytestmark_db
def test_packing_a_model_whose_attention_cannot_keep_rows_apart_is_refused_naming_it(
    alice, tmp_path
):
    """OPT builds its own causal mask and ignores restarting positions."""
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    llama = tiny_llama_folder(tmp_path / "llama")
    folder = tmp_path / "opt"
    tokenizer = AutoTokenizer.from_pretrained(llama)
    config = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    OPTForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = model_upload(owner=alice, file=ContentFile(zipped(folder), "tiny-opt.zip"))
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=20),
        base_model=model,
        hyperparameters={"epochs": 1, "sequence_packing_enabled": True},
    )
    job = factories.run_here(job)
    assert job.status == JobStatus.FAILED
    assert job.failure_type == FailureType.INVALID_PARAMETERS
    assert "sequence_packing_enabled: the attention of this opt model" in job.failure_message
    assert "Turn packing off" in job.failure_message


@pytestmark_db
@pytest.mark.parametrize(
    ("value", "text"),
    [("yes", "must be true or false"), (1, "must be true or false")],
)
def test_packing_takes_only_true_or_false(alice, value, text):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=text):
        _job(alice, factories.dataset(alice, records=10), sequence_packing_enabled=value)
