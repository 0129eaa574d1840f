"""The provider as an ASGI application for uvicorn; its database is made on start."""

import django
from django.core.asgi import get_asgi_application
from django.core.management import call_command

django.setup()
call_command("migrate", verbosity=0, interactive=False)
application = get_asgi_application()
