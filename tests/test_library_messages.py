"""A library's error, told to a person: all its lines (the first alone is often cut
mid-sentence), bounded, without server paths."""

from django.conf import settings

from jobs.domain.redact import library_message


def test_a_library_error_is_told_whole_joined_bounded_and_without_server_paths():
    error = ValueError(
        "Couldn't instantiate the backend tokenizer from one of: \n"
        "(1) a `tokenizers` library serialization file, \n"
        f"(2) a slow tokenizer instance to convert or \n(3) {settings.MEDIA_ROOT}/models/x/y.json"
    )
    told = library_message(error)
    assert told.startswith("Couldn't instantiate the backend tokenizer from one of: (1) a")
    assert "(2) a slow tokenizer instance" in told and "<media>/models/x/y.json" in told
    assert str(settings.MEDIA_ROOT) not in told and "\n" not in told
    long = library_message(RuntimeError("word " * 200), limit=50)
    assert len(long) == 50 and long.endswith("…")
    assert library_message(KeyError()) == "KeyError"
