"""Heavy uploads and the web process: what a hostile tokenizer, a dataset of huge rows and a chat
template that loops cost the web process and the other people using the hub at the same time.

    .venv/bin/python benchmarks/heavy_inputs.py [--checkout DIR] [--json FILE]

It starts the hub of a checkout (this one by default; an older commit's worktree to measure
before a change) in the embedded profile, on a free port with a scratch data folder, and for
each input sends it as one user while a second user keeps asking for their job list. It prints,
per input: the answer and how long it took, how much the web process grew (peak resident memory
over what it held before), and the second user's longest wait. docs/security.md quotes the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import runhub  # noqa: E402

VOCABULARY = 3_000_000  # the tokenizer.json entries tried from outside
ROWS, ROW_BYTES = 30, int(3.9 * 1024 * 1024)  # the dataset of huge rows tried from outside
LOOPING_TEMPLATE = (  # a chat template that renders for a long time, tried from outside
    "{% for a in range(3000) %}{% for b in range(3000) %}{{ '' }}{% endfor %}{% endfor %}"
    "{{ messages[0]['content'] }}"
)


@contextlib.contextmanager
def hub(checkout: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    """The checkout's ``manage.py runhub`` (web in that process, workers as children): its URL,
    the web process's pid, and the environment that reaches its database."""

    data = Path(tempfile.mkdtemp(prefix="hub-heavy-"))
    env = {
        **os.environ,
        "HUB_DATA_DIR": str(data),
        "HUB_SECRET_KEY": "benchmark-only-" + "x" * 40,
        "HUB_API_RATE_USER": "1000000/minute",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with runhub(checkout, env) as (url, pid):
        yield url, pid, env


def tokens(checkout: Path, env: dict[str, str]) -> tuple[str, str]:
    """API tokens of two new people: the one who uploads, and the one who only browses."""
    code = (
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "for name in ('sender', 'neighbour'):\n"
        "    user = User.objects.create_user(name, f'{name}@example.com', 'x' * 20)\n"
        "    print(Token.objects.create(user=user).key)\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    sender, neighbour = done.stdout.split()[-2:]
    return sender, neighbour


def model_zip(folder: Path, into: Path, *, vocabulary: int = 0, template: str = "") -> Path:
    """The tiny Llama as an upload, with its tokenizer.json grown to ``vocabulary`` entries or
    its tokenizer_config.json given ``template``."""
    from tests.hf_samples import tiny_llama_folder

    model = tiny_llama_folder(folder)
    if vocabulary:
        tokenizer = json.loads((model / "tokenizer.json").read_text())
        tokenizer["model"]["vocab"] = {f"t{n}": n for n in range(vocabulary)}
        tokenizer["model"]["merges"] = []
        tokenizer["added_tokens"] = []
        (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    if template:
        config = json.loads((model / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (model / "tokenizer_config.json").write_text(json.dumps(config))
    with zipfile.ZipFile(into, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(model).as_posix())
    return into


def chat_rows(into: Path) -> Path:
    """Twenty chat rows: what makes a submit render the model's chat template."""
    with into.open("w") as handle:
        for n in range(20):
            messages = [{"role": "user", "content": str(n)}, {"role": "assistant", "content": "x"}]
            handle.write(json.dumps({"messages": messages}) + "\n")
    return into


def huge_rows(into: Path) -> Path:
    with into.open("w") as handle:
        for n in range(ROWS):
            words = "seven hundred and " * (ROW_BYTES // len("seven hundred and "))
            handle.write(json.dumps({"prompt": f"{n} {words}", "completion": "x"}))
            handle.write("\n")
    return into


class Watch:
    """While an action runs: the web process's resident memory, sampled every 20 ms, and the
    neighbour's job list, asked for again as soon as it answers."""

    def __init__(self, url: str, pid: int, neighbour: str) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.url, self.neighbour = url, neighbour
        self.stop = threading.Event()
        self.peak = self.before = self._resident()
        self.waits: list[float] = []

    def _resident(self) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS in {self.status}")

    def _memory(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self._resident())

    def _neighbour(self) -> None:
        import requests

        headers = {"Authorization": f"Token {self.neighbour}"}
        while not self.stop.is_set():
            started = time.perf_counter()
            requests.get(f"{self.url}/api/v1/jobs/", headers=headers, timeout=600)
            self.waits.append(time.perf_counter() - started)

    def measure(self, action: Callable[[], Any]) -> dict[str, Any]:
        threads = [threading.Thread(target=t) for t in (self._memory, self._neighbour)]
        for thread in threads:
            thread.start()
        started = time.perf_counter()
        answer = action()
        took = time.perf_counter() - started
        self.stop.set()
        for thread in threads:
            thread.join()
        return {
            "answer": f"{answer.status_code} {answer.text[:160]}",
            "answer_s": round(took, 2),
            "web_growth_mib": round((self.peak - self.before) / 2**20, 1),
            "neighbour_worst_wait_s": round(max(self.waits), 2),
            "neighbour_requests": len(self.waits),
        }


def run(checkout: Path) -> dict[str, Any]:
    import requests

    scratch = Path(tempfile.mkdtemp(prefix="hub-heavy-inputs-"))
    big_vocabulary = model_zip(scratch / "a", scratch / "vocabulary.zip", vocabulary=VOCABULARY)
    looping = model_zip(scratch / "b", scratch / "template.zip", template=LOOPING_TEMPLATE)
    rows = huge_rows(scratch / "rows.jsonl")
    results: dict[str, Any] = {"checkout": str(checkout)}
    with hub(checkout) as (url, pid, env):
        sender, neighbour = tokens(checkout, env)
        headers = {"Authorization": f"Token {sender}"}

        def upload(kind: str, path: Path) -> Any:
            with path.open("rb") as handle:
                return requests.post(
                    f"{url}/api/v1/{kind}/",
                    headers=headers,
                    files={"file": (path.name, handle)},
                    data={"name": path.stem},
                    timeout=900,
                )

        results["vocabulary"] = Watch(url, pid, neighbour).measure(
            lambda: upload("models", big_vocabulary)
        )
        results["template"] = Watch(url, pid, neighbour).measure(lambda: upload("models", looping))
        chat = upload("datasets", chat_rows(scratch / "chat.jsonl"))
        template_model = results["template"]["answer"].split('"id":"', 1)[-1].split('"', 1)[0]
        results["template_submit"] = Watch(url, pid, neighbour).measure(
            lambda: requests.post(
                f"{url}/api/v1/jobs/customization/",
                headers=headers,
                json={"model": template_model, "dataset": chat.json()["id"]},
                timeout=900,
            )
        )
        dataset = upload("datasets", rows)
        if dataset.status_code != 201:
            raise SystemExit(f"the dataset of huge rows was refused: {dataset.text[:300]}")
        results["rows_submit"] = Watch(url, pid, neighbour).measure(
            lambda: requests.post(
                f"{url}/api/v1/jobs/customization/",
                headers=headers,
                json={"dataset": dataset.json()["id"], "hyperparameters": {"epochs": 1}},
                timeout=900,
            )
        )
    results["sizes"] = {
        "vocabulary_zip_mib": round(big_vocabulary.stat().st_size / 2**20, 1),
        "rows_mib": round(rows.stat().st_size / 2**20, 1),
    }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the hub to measure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    results = run(args.checkout.resolve())
    for name in ("vocabulary", "template", "template_submit", "rows_submit"):
        figures = results[name]
        print(
            f"{name:15} answered in {figures['answer_s']:7.2f} s; web process "
            f"+{figures['web_growth_mib']:7.1f} MiB; neighbour's worst wait "
            f"{figures['neighbour_worst_wait_s']:6.2f} s over {figures['neighbour_requests']} "
            f"requests; answer: {figures['answer'][:100]!r}"
        )
    print(f"sizes: {results['sizes']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
