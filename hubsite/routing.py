"""Websocket routes of every app, gathered for ``asgi.py``."""

from django.urls import URLPattern, URLResolver

from jobs.live.routing import websocket_urlpatterns as job_routes

websocket_urlpatterns: list[URLPattern | URLResolver] = [*job_routes]
