"""Writes the figures of the fault suite into docs/reliability.md.

Runs ``pytest tests/faults`` with ``HUB_FAULT_REPORT`` pointing at a file where each fault test
records what it measured (tests/faults/conftest.py, ``figures``), then replaces the part of
docs/reliability.md between the ``figures`` markers with a table of them and the totals.
Exits non-zero when a test failed: figures of a failing run are not written.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def _rows(report: Path) -> list[dict[str, Any]]:
    if not report.exists():
        return []
    return [json.loads(line) for line in report.read_text().splitlines()]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--from"]:
        # The figures a passing run of the whole suite wrote (.ci/run): not run twice.
        rows = _rows(Path(argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "faults.jsonl"
            env = {**os.environ, "HUB_FAULT_REPORT": str(report)}
            command = [
                sys.executable,
                "-m",
                "pytest",
                "tests/faults",
                "-q",
                "-p",
                "no:cacheprovider",
            ]
            done = subprocess.run(command, cwd=ROOT, env=env, check=False)
            rows = _rows(report)
        if done.returncode != 0:
            print("The fault suite failed: docs/reliability.md is left as it was.", file=sys.stderr)
            return done.returncode
    if not rows:
        print("No figures were recorded: docs/reliability.md is left as it was.", file=sys.stderr)
        return 1
    lines = [
        START,
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} "
        f"({os.cpu_count()} cores), production profile, `scripts/reliability-report`.",
        "",
        "| fault injected | in flight | lost | duplicated | recovered in | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        recovery = row.get("recovery_s", row.get("submit_s"))
        label = "submit answered in" if "submit_s" in row else ""
        lines.append(
            f"| {row['fault']} | {row['in_flight']} | {row['lost']} | {row['duplicated']} | "
            f"{label + ' ' if label else ''}{recovery} s | {row.get('note', '')} |"
        )
    lost = sum(int(r["lost"]) for r in rows)
    duplicated = sum(int(r["duplicated"]) for r in rows)
    lines += ["", f"Faults injected: {len(rows)} · lost: {lost} · duplicated: {duplicated}.", END]
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + "\n".join(lines) + tail)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
