"""Websocket routes of every app, gathered for ``asgi.py``."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
