"""``manage.py storagecheck``: after a restore (or any time), compare the rows that name stored
files with what the storage holds. Exit 1 when a row's file is missing or of another size (its
downloads and jobs would fail); files no row names are listed (the reaper removes them once they
are a day old) but are not an error."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from hubsite import object_storage
from jobs.domain import inventory
from jobs.domain.disk import size_text


class Command(BaseCommand):
    help = "Compare the database's rows with the stored files (a restore check); exit 1 if any is missing."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=50, help="List at most this many of each.")

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        found = inventory.take()
        self.stdout.write(
            f"Storage: {object_storage.describe()}\n"
            f"{found.rows} rows, {found.objects} stored files ({size_text(found.stored_bytes)})"
        )
        for missing in found.missing[:limit]:
            what = (
                "is missing"
                if missing.found is None
                else f"is {missing.found} bytes, not {missing.expected}"
            )
            self.stdout.write(f"  {missing.row}: {missing.name} {what}")
        for name, size, modified in found.orphans[:limit]:
            self.stdout.write(
                f"  {name} ({size_text(size)}, stored {modified:%Y-%m-%d %H:%M}) is named by no row"
            )
        if found.missing:
            self.stdout.write(
                f"NOT consistent: {len(found.missing)} row(s) without their file, "
                f"{len(found.orphans)} file(s) without a row."
            )
            sys.exit(1)
        self.stdout.write(
            f"consistent: every row has its file; {len(found.orphans)} file(s) without a row."
        )
