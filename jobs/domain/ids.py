"""Short, URL-safe public ids: a kind letter and eight characters that are hard to misread.

32 symbols over eight places give about 10^12 ids per kind; the unique index settles the rest.
"""

import secrets

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1
LENGTH = 8


def new_public_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def job_public_id() -> str:
    return new_public_id("j")


def model_public_id() -> str:
    return new_public_id("m")


def dataset_public_id() -> str:
    return new_public_id("d")


def generation_public_id() -> str:
    return new_public_id("g")
