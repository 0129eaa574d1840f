"""The Celery application shared by the web processes (which enqueue) and the workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsite.settings.base")

app = Celery("hubsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in each app's task module: sharing.tasks, notifications.tasks, and the engine's
# jobs.engine.tasks.
app.autodiscover_tasks(["jobs.engine", "sharing", "notifications"])
