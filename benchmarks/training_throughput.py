"""Training throughput and peak memory of a customization, as the worker runs it.

Each configuration runs in a fresh process (so that its peak memory is its own): the runner's
own training function (jobs.engine.training.sft.train: transformers' Trainer, LoRA with peft or
all weights, rows tokenized lazily, a checkpoint every epoch) on the demo's model and data (the
built-in tiny-llama and 300 "numbers in words" rows), on the GPU when there is one, else on the
CPU. Printed: trained tokens (not padding) per second, wall time of training, peak resident
memory of the process, on a GPU the peak memory PyTorch allocated there (none here: this
machine has no GPU), and the packing efficiency (jobs.domain.packing). Configurations: LoRA and
all weights as SFT, LoRA SFT with sequence packing, LoRA DPO on preference pairs of the same rows.

Then "Try it": the time from a prompt's request to its first answered token, for a first
prompt (the generation worker loads the model) and a second one (the model kept loaded), through
the service and the worker's own code in this process (jobs/engine/generation.py; the queue's
hop and the event stream's poll, at most 40 ms, are not in it); with ``--hub URL --token T``,
end to end instead, through a running hub's API with the Python client (``--model`` names the
model, tiny-llama by default).

    .venv/bin/python benchmarks/training_throughput.py [--epochs 5] [--threads 2] [--json FILE]
    .venv/bin/python benchmarks/training_throughput.py --only-try-it [--hub URL --token T]

The same command runs unchanged on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, wherever the script is run from

LORA = {"finetuning_type": "lora", "learning_rate": 0.01, "lora": {"adapter_dim": 16, "alpha": 32}}
CONFIGS: dict[str, dict[str, Any]] = {
    "lora r16": {**LORA, "batch_size": 16},
    "all_weights": {"finetuning_type": "all_weights", "learning_rate": 0.003, "batch_size": 16},
    # Sequences of 64 tokens hold about five rows: 3 of them a step are about the 16 rows a
    # step above, so both learn from as many tokens a step.
    "lora packed": {
        **LORA,
        "batch_size": 3,
        "max_seq_length": 64,
        "sequence_packing_enabled": True,
    },
    # Preference pairs of the same numbers: the spelling chosen over "I do not know".
    "dpo lora": {**LORA, "learning_rate": 0.005, "batch_size": 16, "training_type": "dpo"},
}


def measure(name: str, epochs: int, threads: int, want: str) -> dict[str, Any]:
    """One configuration, in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsite.settings.test")
    import django

    django.setup()
    import torch

    from jobs.demo import numbers_dataset
    from jobs.domain.base_models import build_tiny_llama
    from jobs.domain.hyperparameters import parse_hyperparameters
    from jobs.engine.training.device import detect
    from jobs.engine.training.launch import NullSink
    from jobs.engine.training.sft import TrainSpec, train

    with tempfile.TemporaryDirectory() as scratch:
        folder = build_tiny_llama(Path(scratch) / "tiny-llama")
        data = Path(scratch) / "numbers.jsonl"
        data.write_bytes(numbers_dataset(0, 300))
        params = parse_hyperparameters(
            {**CONFIGS[name], "epochs": epochs, "early_stopping_patience": 0}
        )
        if params.training_type == "dpo":
            rows = [json.loads(line) for line in data.read_text().splitlines()]
            data.write_text(
                "".join(
                    json.dumps({"prompt": r["prompt"], "chosen": r["completion"],
                                "rejected": "I do not know"}) + "\n"
                    for r in rows
                )
            )  # fmt: skip
        spec = TrainSpec(
            base=str(folder),
            train_file=str(data),
            validation_file=None,
            kept=270,
            params=params.as_dict(),
            checkpoints=str(Path(scratch) / "checkpoints"),
            final=str(Path(scratch) / "final"),
            want=want,
            threads=threads,
        )
        device = detect(want=want, threads=threads)
        if device.is_gpu:
            torch.cuda.reset_peak_memory_stats()
        result = train(spec, NullSink())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "config": name,
        "device": device.label,
        "epochs": epochs,
        "tokens": result.tokens_trained,
        "seconds": round(result.seconds, 2),
        "tokens_per_s": round(result.tokens_trained / result.seconds),
        "peak_rss_mib": round(peak_kib / 1024),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.is_gpu else None,
        "final_val_loss": round(result.val_loss, 4),
        "packing_efficiency": round(result.packing_efficiency or 0.0, 3),
    }


PROMPTS = ["one hundred and one, one hundred and two,", "twelve"]


def measure_try_it(threads: int) -> dict[str, Any]:
    """Time to the first token of a first and a second prompt, in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsite.settings.test")
    os.environ["HUB_TORCH_THREADS"] = str(threads)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from jobs.domain.base_models import BUILTIN_NAME
    from jobs.engine import generation
    from jobs.services.generation import generation_start

    call_command("migrate", verbosity=0)
    person = User.objects.create(username="bench")
    figures: dict[str, Any] = {"config": "try it", "model": BUILTIN_NAME}
    for which, prompt in zip(("first", "second"), PROMPTS, strict=True):
        asked = generation_start(requester=person, model=BUILTIN_NAME, data={"prompt": prompt})
        generation.run(asked.pk, worker="benchmark")
        asked.refresh_from_db()
        assert asked.first_token_at and asked.finished_at, asked.error
        figures[f"{which}_ttft_s"] = round(
            (asked.first_token_at - asked.created_at).total_seconds(), 3
        )
        figures[f"{which}_total_s"] = round(
            (asked.finished_at - asked.created_at).total_seconds(), 3
        )
        figures[f"{which}_tokens"] = asked.tokens
        figures[f"{which}_warm"] = asked.warm
    return figures


def measure_try_it_on(hub: str, token: str, model: str) -> dict[str, Any]:
    """The same, end to end through a running hub (queue, worker, event stream, client)."""
    import time

    from hubclient import Client

    figures: dict[str, Any] = {"config": "try it", "model": model, "hub": hub}
    with Client(hub, token) as client:
        for which, prompt in zip(("first", "second"), PROMPTS, strict=True):
            started = time.perf_counter()
            answer = client.generate(model, prompt, stream=True)
            assert not isinstance(answer, str)
            first = None
            for _ in answer:
                first = first or time.perf_counter() - started
            figures[f"{which}_ttft_s"] = round(first or float("nan"), 3)
            figures[f"{which}_total_s"] = round(time.perf_counter() - started, 3)
            figures[f"{which}_tokens"] = answer.result.get("tokens")
            figures[f"{which}_warm"] = answer.result.get("warm")
    return figures


def print_try_it(row: dict[str, Any]) -> None:
    where = f"through {row['hub']}" if row.get("hub") else "worker code in this process"
    print(f"Try it ({row['model']}, {where}):")
    for which in ("first", "second"):
        loaded = "model kept loaded" if row[f"{which}_warm"] else "model loaded for it"
        print(
            f"  {which} prompt: first token after {row[f'{which}_ttft_s']:.3f} s, "
            f"{row[f'{which}_tokens']} tokens in {row[f'{which}_total_s']:.3f} s ({loaded})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hardware", default="any", choices=["any", "gpu", "cpu"])
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--only-try-it", action="store_true", help="measure Try it only")
    parser.add_argument("--hub", help="measure Try it end to end through this running hub")
    parser.add_argument("--token", help="an API token of that hub")
    parser.add_argument("--model", default="tiny-llama", help="the model Try it asks (--hub)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process measuring one config
    args = parser.parse_args()
    if args.one == "try it":
        print(json.dumps(measure_try_it(args.threads)))
        return
    if args.one:
        print(json.dumps(measure(args.one, args.epochs, args.threads, args.hardware)))
        return
    if args.hub:
        print_try_it(measure_try_it_on(args.hub, args.token or "", args.model))
        return
    rows = []
    for name in [*([] if args.only_try_it else CONFIGS), "try it"]:
        command = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs)]
        command += ["--threads", str(args.threads), "--hardware", args.hardware]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    try_it = rows.pop()
    if rows:
        print(
            f"{'config':<12} {'device':<18} {'tokens/s':>9} {'tokens':>8} {'train s':>8} "
            f"{'peak RSS':>9} {'peak GPU':>9} {'val_loss':>9} {'packing':>8}"
        )
        for row in rows:
            gpu = f"{row['peak_gpu_mib']} MiB" if row["peak_gpu_mib"] is not None else "—"
            print(
                f"{row['config']:<12} {row['device']:<18} {row['tokens_per_s']:>9,} {row['tokens']:>8,} "
                f"{row['seconds']:>8} {row['peak_rss_mib']:>5} MiB {gpu:>9} {row['final_val_loss']:>9} "
                f"{row['packing_efficiency']:>8.1%}"
            )
        print(
            "packing: row tokens over tokens computed. DPO's val_loss is its preference loss "
            "(log 2 = 0.693 before training), not comparable with the others'."
        )
    print_try_it(try_it)
    if args.json:
        Path(args.json).write_text(json.dumps([*rows, try_it], indent=2) + "\n")


if __name__ == "__main__":
    main()
