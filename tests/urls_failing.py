"""The hub's routes and error handlers, plus two views that fail (a page and an API route), for
the 500 tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from hubsite.urls import handler400, handler403, handler404, handler500, urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


urlpatterns = [path("boom/", boom), path("api/v1/boom/", boom), *urlpatterns]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
