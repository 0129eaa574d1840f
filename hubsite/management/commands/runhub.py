"""``manage.py runhub``: the one command that runs the hub in the embedded profile."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from jobs.demo import ensure_demo


class Command(BaseCommand):
    help = "Prepare the database and static files, create the demo account, and serve the hub."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HUB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument(
            "--no-demo", action="store_true", help="Do not create the demo account."
        )

    def handle(self, *args: Any, host: str, port: int, no_demo: bool, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        address = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}/"
        lines = [f"Model Job Hub ({settings.HUB_PROFILE} profile) is starting at {address}"]
        if not no_demo:
            demo = ensure_demo()
            secret = demo.password or "(changed since it was made; the admin can reset it)"
            lines.append(f"  Demo account: {demo.username} / {secret}")
        lines.append(f"  Data directory: {settings.DATA_DIR}")
        lines.append("  Stop with Ctrl-C.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
        self._serve(host, port)

    def _serve(self, host: str, port: int) -> None:
        import uvicorn

        uvicorn.run(
            "hubsite.asgi:application", host=host, port=port, lifespan="off", log_level="info"
        )
