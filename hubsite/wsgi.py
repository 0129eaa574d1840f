"""WSGI entry point, for tools that want one; the hub itself is served over ASGI."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsite.settings.base")

application = get_wsgi_application()
