"""Django's admin looks for an app's ``admin`` module here; the admin itself is a face of the
hub and lives with the others in ``jobs/web/admin.py``."""

from jobs.web import admin  # noqa: F401 (registering the models is importing it)
