"""What a fault test had in flight, counted from the database after the fault: jobs, metric
points, status log entries, events and stored files, and which of them were lost or written
twice. Each fault test asserts ``lost == duplicated == 0`` and records the counts as figures."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from jobs.domain.status import TERMINAL
from jobs.models import Artifact, Job, MetricPoint, MLModel


@dataclass
class Ledger:
    jobs: int = 0
    points: int = 0
    status_logs: int = 0
    events: int = 0
    files: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, object]:
        return {
            "in_flight": f"{self.jobs} job{'s' if self.jobs != 1 else ''}, {self.points} points, "
            f"{self.status_logs} status "
            f"entries, {self.events} events, {self.files} files",
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
        }


def audit(jobs: list[Job]) -> Ledger:
    ledger = Ledger()
    for job in jobs:
        job.refresh_from_db()
        name = job.public_id
        ledger.jobs += 1
        if job.status not in TERMINAL:
            ledger.lost.append(f"{name} never reached a final status ({job.status})")

        points = MetricPoint.objects.filter(series__job=job).values_list("series__key", "step")
        counted = Counter(points)
        ledger.points += len(counted)
        ledger.duplicated += [
            f"{name} {key} step {step}" for (key, step), n in counted.items() if n > 1
        ]

        statuses = list(job.status_logs.values_list("status", flat=True))
        ledger.status_logs += len(statuses)
        changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
        finals = [s for s in changes if s in TERMINAL]  # reached once
        if len(finals) > 1:
            ledger.duplicated.append(f"{name} ended {len(finals)} times: {finals}")
        runs = changes.count("running")  # notes repeat the status they were written in
        if runs != job.attempts:
            ledger.duplicated.append(f"{name} started {runs} times in {job.attempts} attempts")

        seqs = list(job.events.order_by("seq").values_list("seq", flat=True))
        ledger.events += len(seqs)
        if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            ledger.lost.append(f"{name} events have gaps: {seqs}")

        stored: list[Artifact | MLModel] = [
            *Artifact.objects.filter(job=job),
            *MLModel.objects.filter(produced_by=job),
        ]
        ledger.files += len(stored)
        names = Counter(f"{type(row).__name__} {row.name}" for row in stored)
        ledger.duplicated += [f"{name} stored {k} {n} times" for k, n in names.items() if n > 1]
        for row in stored:
            path = row.file.path
            if not os.path.exists(path) or os.path.getsize(path) != row.size:
                ledger.lost.append(f"{name} {row.name}: its file is missing or partial")
        if job.status == "ready" and job.target_model is None:
            ledger.lost.append(f"{name} is ready without its target model")
    return ledger
