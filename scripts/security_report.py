"""Writes the figures of the attack suite into docs/security.md.

Runs ``pytest tests/security`` (the environment chooses the profile: scripts/security-report
sets the production one), reads the JUnit report, and replaces the part of docs/security.md
between the ``figures`` markers with: each promise (a test module's docstring), its attacks
(the tests), tried and held, and the totals. Exits non-zero when an attack was not held.
"""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "security"
DOC = ROOT / "docs" / "security.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def promise_of(module: Path) -> str:
    doc = ast.get_docstring(ast.parse(module.read_text())) or module.stem
    return " ".join(doc.split("\n\n")[0].split())


def run_suite() -> dict[str, list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider"]
        subprocess.run([*command, f"--junitxml={report}"], cwd=ROOT, check=False)
        tree = ET.parse(report)
    results: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for case in tree.iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "held"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "NOT HELD"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        results[module].append((case.get("name", ""), outcome))
    return results


def figures(results: dict[str, list[tuple[str, str]]]) -> str:
    tried = sum(len(cases) for cases in results.values())
    held = sum(1 for cases in results.values() for _, o in cases if o == "held")
    skipped = sum(1 for cases in results.values() for _, o in cases if o == "skipped")
    profile = "production (PostgreSQL, Redis)" if os.environ.get("REDIS_URL") else "embedded"
    lines = [
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {profile} profile, "
        f"{platform.machine()} with {os.cpu_count()} cores, by `scripts/security-report`.",
        "",
        f"**Attacks tried: {tried}. Held: {held}. Not held: {tried - held - skipped}. "
        f"Skipped: {skipped}.**",
        "",
        "| promise | tests (module) | tried | held |",
        "|---|---|---|---|",
    ]
    for module in sorted(results):
        cases = results[module]
        promise = promise_of(SUITE / f"{module}.py")
        ok = sum(1 for _, o in cases if o == "held")
        lines.append(f"| {promise} | `tests/security/{module}.py` | {len(cases)} | {ok} |")
    lines += ["", "<details><summary>Every attack and its outcome</summary>", ""]
    for module in sorted(results):
        lines.append(f"**{module}**")
        lines.append("")
        lines += [f"- `{name}`: {outcome}" for name, outcome in results[module]]
        lines.append("")
    lines.append("</details>")
    return "\n".join(lines)


def main() -> int:
    results = run_suite()
    text = DOC.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOC.write_text(f"{before}{START}\n{figures(results)}\n{END}{after}")
    failed = sum(1 for cases in results.values() for _, o in cases if o == "NOT HELD")
    print(f"docs/security.md updated: {failed} attack(s) not held.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
