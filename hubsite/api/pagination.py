from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 2**62  # beyond any table, and within a SQL bigint


class Pagination(LimitOffsetPagination):
    """``limit`` (at most 1000) and ``offset``; absurd values are clamped, never a server error."""

    max_limit = 1000

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
