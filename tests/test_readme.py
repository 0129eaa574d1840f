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


def test_the_readmes_commands_for_making_administrators_work_as_written(
    alice, client, monkeypatch, capsys
):
    """Each `.venv/bin/python manage.py …` line of the README's "People" section runs (the
    password comes from the environment instead of the prompt), and its administrator reaches
    the admin."""
    import shlex

    from django.contrib.auth.models import User
    from django.core.management import call_command

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## People:") :]
    section = section[: section.index("\n## ", 1)]
    commands = re.findall(r"^\.venv/bin/python manage\.py (.+)$", section, re.MULTILINE)
    assert [c.split()[0] for c in commands] == ["createsuperuser", "changepassword"]
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long first password 1")
    name, *args = shlex.split(commands[0])
    call_command(name, *args, interactive=False)
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.email == "admin@example.com"
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "a long second password 2")
    name, *args = shlex.split(commands[1])
    call_command(name, *args)
    admin.refresh_from_db()
    assert admin.check_password("a long second password 2")
    client.force_login(admin)
    assert client.get("/admin/auth/user/add/").status_code == 200
    assert 'href="/admin/"' in client.get("/jobs/").content.decode()  # the Admin link
    client.force_login(alice)  # the demo-like ordinary account: no Admin link, no admin
    assert 'href="/admin/"' not in client.get("/jobs/").content.decode()
