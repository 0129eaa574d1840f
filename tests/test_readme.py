"""The README documents every setting the hub reads."""

import re

from tests.helpers import ROOT

SOURCES = [
    "hubsite/settings/base.py",
    "hubsite/management/commands/runhub.py",
    "scripts/bootstrap.sh",
]


def test_readme_lists_every_environment_variable():
    readme = (ROOT / "README.md").read_text()
    read = set()
    for source in SOURCES:
        text = (ROOT / source).read_text()
        read |= set(re.findall(r'env_\w+\(\s*"([A-Z_]+)"', text))
        read |= set(re.findall(r'environ\.get\("([A-Z_]+)"', text))
        read |= set(re.findall(r"\$\{(HUB_[A-Z_]+)", text))
    assert {"DATABASE_URL", "REDIS_URL", "HUB_SECRET_KEY", "HUB_PORT", "HUB_PYTHON"} <= read
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert missing == []
