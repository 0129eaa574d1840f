"""Evaluation jobs: each model the job names, in turn, on the dataset's rows (the first
``limit``): its loss on the expected text, the text it writes for each prompt, and the scores of
jobs.domain.evaluation. Results: the metrics per model in the job's summary (its page's table),
and every row with each model's output and scores as ``rows.jsonl`` and ``rows.csv``, the worst
rows first (lowest mean ROUGE-L over the models). One step per row per model."""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from jobs.domain import base_models, hf_models, sft_data
from jobs.domain.evaluation import (
    ROW_SCORE,
    EvaluationSettings,
    corpus_bleu,
    perplexity,
    row_scores,
)
from jobs.domain.status import FailureType
from jobs.engine.runners.base import JobFailure, Results, RunContext, Runner, Space, register
from jobs.engine.scratch import local_path
from jobs.models import ArtifactKind, Job

SUMMARY_ROWS = 100  # rows kept in the summary for the page; the files hold them all


@dataclass
class Row:
    prompt: str  # as the model reads it (chat rendered)
    shown: str  # as the page shows it
    expected: str
    rejected: str | None = None  # a preference row's


def evaluated_models(job: Job) -> list[tuple[str, str]]:
    """(name or id, label) of each model the job evaluates, in the order given."""
    inputs = {ji.model.public_id: ji.model for ji in job.job_inputs.select_related("model")}
    named = []
    for name in job.hyperparameters.get("models", []):
        model = inputs.get(name)
        named.append((name, f"{model.name} ({model.public_id})" if model else name))
    return named


def _rows(job: Job, tokenizer: Any, limit: int | None) -> list[Row]:
    assert job.dataset is not None
    rows: list[Row] = []
    with local_path(job.dataset.file).open("rb") as handle:
        for _, record in sft_data.records(handle):
            if limit is not None and len(rows) >= limit:
                break
            kind = sft_data.row_format(record)
            if kind == sft_data.CHAT:
                messages = record["messages"]
                last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
                prompt = sft_data.prompt_text(tokenizer, messages[:last]) if last else ""
                shown = messages[last - 1]["content"] if last else ""
                rows.append(Row(prompt, shown, messages[last]["content"]))
            elif kind == sft_data.PREFERENCE:
                question, chosen, rejected = sft_data.preference_pair(record)
                shown = question if isinstance(question, str) else question[-1]["content"]
                rows.append(Row(sft_data.prompt_text(tokenizer, question), shown, chosen, rejected))
            elif kind == sft_data.PROMPT_ANSWER:
                answer = sft_data.answer_text(record)
                rows.append(Row(record["prompt"], record["prompt"], answer))
            else:
                rows.append(Row(record["prompt"], record["prompt"], record["completion"]))
    return rows


@register
class EvaluationRunner(Runner):
    kind = "evaluation"

    def space_needed(self, job: Job) -> Space:
        largest = max((ji.model.size for ji in job.job_inputs.select_related("model")), default=0)
        return Space(media=job.dataset.size * 4 if job.dataset else 0, work=3 * largest)

    def run(self, ctx: RunContext) -> Results:
        import torch
        from django.conf import settings as django_settings

        job, reporter = ctx.job, ctx.reporter
        settings = EvaluationSettings(**job.hyperparameters.get("settings", {}))
        torch.set_num_threads(django_settings.HUB_TORCH_THREADS)
        models = evaluated_models(job)
        reporter.progress(ran_on=f"cpu ({django_settings.HUB_TORCH_THREADS} threads)")
        results: list[dict[str, Any]] = []
        per_row: list[dict[str, Any]] = []
        done = 0
        for index, (name, label) in enumerate(models):
            folder = self._folder(ctx, name, label, index)
            from jobs.engine.training.sft import load_tokenizer

            tokenizer = load_tokenizer(str(folder))
            try:
                rows = _rows(job, tokenizer, settings.limit)
            except sft_data.RowError as error:
                raise JobFailure(FailureType.INVALID_DATASET, f"{label}: {error}.") from None
            if not per_row:
                per_row = [
                    {"prompt": r.shown, "expected": r.expected, "outputs": {}, "scores": {}}
                    for r in rows
                ]
                reporter.progress(training_samples=len(rows) * len(models))
            model = _load(folder)
            reporter.log(f"Evaluating {label} on {len(rows)} rows.")
            totals = {"loss": 0.0, "tokens": 0, "preferred": 0, "pairs": 0}
            sums: dict[str, float] = {}
            outputs: list[str] = []
            generator = torch.Generator().manual_seed(settings.seed)
            for row, record in zip(rows, per_row, strict=True):
                reporter.check_stop()
                loss, tokens = _nll(model, tokenizer, row.prompt, row.expected)
                totals["loss"] += loss
                totals["tokens"] += tokens
                if row.rejected is not None:
                    rejected, _ = _nll(model, tokenizer, row.prompt, row.rejected)
                    totals["pairs"] += 1
                    totals["preferred"] += 1 if loss < rejected else 0
                text = _generate(model, tokenizer, row.prompt, settings, generator)
                outputs.append(text)
                scores = row_scores(text, row.expected, settings)
                for key, value in scores.items():
                    sums[key] = sums.get(key, 0.0) + value
                record["outputs"][name] = text
                record["scores"][name] = scores
                done += 1
                reporter.progress(steps_completed=done)
            count = max(len(rows), 1)
            mean_loss = totals["loss"] / totals["tokens"] if totals["tokens"] else None
            metrics: dict[str, float | None] = {
                "loss": mean_loss,
                "perplexity": perplexity(mean_loss),
                **{key: value / count for key, value in sums.items()},
                "bleu": corpus_bleu(outputs, [r.expected for r in rows]),
            }
            if totals["pairs"]:
                metrics["preference_accuracy"] = totals["preferred"] / totals["pairs"]
            results.append({"model": name, "label": label, "metrics": metrics})
            reporter.log(
                f"{label}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if v is not None)
            )
            del model
        for record in per_row:
            values = [s.get(ROW_SCORE, 0.0) for s in record["scores"].values()]
            record["row_score"] = sum(values) / len(values) if values else 0.0
        per_row.sort(key=lambda r: r["row_score"])
        self._store_rows(ctx, per_row, [name for name, _ in models])
        reporter.progress(
            summary={
                "models": results,
                "rows": len(per_row),
                "worst_rows": per_row[:SUMMARY_ROWS],
                "settings": settings.as_dict(),
            }
        )
        best = max(results, key=lambda r: r["metrics"].get("rouge_l") or 0.0)
        return Results(
            f"Evaluated {len(results)} model(s) on {len(per_row)} rows; highest ROUGE-L: "
            f"{best['label']} ({best['metrics'].get('rouge_l', 0.0):.3f}).",
            "The per-row outputs are stored as rows.jsonl and rows.csv.",
        )

    def _folder(self, ctx: RunContext, name: str, label: str, index: int) -> Path:
        job = ctx.job
        model = next(
            (
                ji.model
                for ji in job.job_inputs.select_related("model")
                if ji.model.public_id == name
            ),
            None,
        )
        if model is None:
            try:
                return base_models.server_model(name).folder
            except ValidationError:
                raise JobFailure(
                    FailureType.INVALID_MODEL, f"The model {name!r} is no longer offered here."
                ) from None
        try:
            return hf_models.unpack_stored(local_path(model.file), ctx.workdir / f"model-{index}")
        except (ValidationError, OSError, zipfile.BadZipFile) as error:
            raise JobFailure(
                FailureType.INVALID_MODEL, f"{label} cannot be read: {type(error).__name__}."
            ) from None

    def _store_rows(self, ctx: RunContext, rows: list[dict[str, Any]], names: list[str]) -> None:
        jsonl = ctx.workdir / "rows.jsonl"
        with jsonl.open("w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        table = ctx.workdir / "rows.csv"
        keys = sorted({k for row in rows for s in row["scores"].values() for k in s})
        with table.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["prompt", "expected"]
                + [f"{n} output" for n in names]
                + [f"{n} {k}" for n in names for k in keys]
            )
            for row in rows:
                writer.writerow(
                    [row["prompt"], row["expected"]]
                    + [row["outputs"].get(n, "") for n in names]
                    + [row["scores"].get(n, {}).get(k, "") for n in names for k in keys]
                )
        ctx.reporter.artifact(ArtifactKind.OUTPUT_DATA, "rows.jsonl", jsonl)
        ctx.reporter.artifact(ArtifactKind.OUTPUT_DATA, "rows.csv", table)


def _load(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return model.eval()


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def _nll(model: Any, tokenizer: Any, prompt: str, expected: str) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens) of the expected text and the end-of-sequence
    token after the prompt: as SFT's loss counts a completion."""
    import torch

    head = prompt_ids(tokenizer, prompt)
    tail = list(tokenizer(expected, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        tail.append(tokenizer.eos_token_id)
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    ids = (head + tail)[:context]
    labels = ([-100] * len(head) + tail)[:context]
    if len(ids) < 2 or all(label == -100 for label in labels[1:]):
        return 0.0, 0
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
    return float(loss), int((target != -100).sum())


def _generate(
    model: Any, tokenizer: Any, prompt: str, settings: EvaluationSettings, generator: Any
) -> str:
    import torch

    ids = torch.tensor([prompt_ids(tokenizer, prompt)])
    sampling = settings.temperature > 0
    options: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": sampling}
    if sampling:
        options["temperature"] = settings.temperature
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            pad_token_id=tokenizer.pad_token_id,
            **options,
        )
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return str(text).strip()
