"""The client writes sizes as the hub's pages do: binary units (KiB, MiB, GiB)."""

import io

from rich.console import Console
from rich.progress import Progress

from hubclient.connection import binary_size, size_columns


def test_sizes_are_written_in_binary_units():
    assert [binary_size(n) for n in (512, 1536, 3 * 1024**2 + 1024**2 // 2, 5 * 1024**3)] == [
        "512 B",
        "1.5 KiB",
        "3.5 MiB",
        "5.0 GiB",
    ]


def test_the_transfer_bar_counts_bytes_in_binary_units():
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with Progress(*size_columns(), console=console, auto_refresh=False) as bar:
        task = bar.add_task("upload", total=4 * 1024**2)
        bar.update(task, completed=3 * 1024**2)
        bar.refresh()
    text = out.getvalue()
    assert "MiB" in text and "MB" not in text.replace("MiB", ""), text
