"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsite.settings.base")

# Django must be set up before anything imports models (the websocket routes do).
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402

from hubsite.routing import websocket_urlpatterns  # noqa: E402
from hubsite.uploads import HubASGIHandler, sweep_upload_temp_files  # noqa: E402
from hubsite.ws_auth import HubAuthMiddleware  # noqa: E402
from hubsite.ws_origin import ExactOriginValidator  # noqa: E402

sweep_upload_temp_files()  # what a killed web process left behind

application = ProtocolTypeRouter(
    {
        "http": HubASGIHandler(),
        "websocket": ExactOriginValidator(
            CookieMiddleware(HubAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
