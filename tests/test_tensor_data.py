"""Tensors datasets (seed 000's h5 layout, .npz): what the hub reads of them and what it refuses.

Every uploaded name is hostile. An h5 file can reach other files on the server (an external
link, external raw storage, a virtual dataset) and both formats can declare far more values than
they hold: each is refused at upload, with words naming the entry, and the server file a link
names is never opened (an inotify watch, tests/canary.py, sees any open by any process). The
file is described in a child process within a memory limit; a refusal through that limit is
tested too. And the layout round-trips with seed 000's own client code (qai_hub)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from numpy.lib import format as npformat
from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

from jobs.domain import tensor_data
from jobs.models import Dataset
from tests import factories
from tests.canary import Canary


def h5_file(build: Any) -> bytes:
    """The bytes of an h5 file that ``build(h5f)`` writes."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5f:
        build(h5f)
    return buffer.getvalue()


def entry(h5f: h5py.File, index: int = 0, name: str = "x", count: int = 1) -> h5py.Group:
    group = h5f.create_group(f"data/{index}")
    group.attrs.update({"name": name, "order": index, "batch_count": count})
    return group


def refused(user: Any, name: str, data: bytes) -> str:
    """The API's refusal of an upload, and nothing stored."""
    response = factories.api(user).post(
        "/api/v1/datasets/", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    assert response.status_code == 400, response.json()
    assert not Dataset.objects.exists()
    message = response.json()["message"]
    assert message.startswith(f"{name}: ")
    return str(message)


def accepted(user: Any, name: str, data: bytes) -> dict[str, Any]:
    response = factories.api(user).post(
        "/api/v1/datasets/", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return dict(response.json())


@pytest.fixture
def canary(tmp_path: Path) -> Any:
    """A server file outside any upload: a real h5 file holding ``/secret`` (so a reader that
    followed a link to it would succeed), watched for any open."""
    built = tmp_path / "build.h5"
    with h5py.File(built, "w") as h5f:
        h5f["secret"] = np.arange(8, dtype=np.float32)
    watched = Canary(tmp_path / "server-secret.h5", built.read_bytes())
    yield watched
    watched.close()


@pytest.fixture
def raw_canary(tmp_path: Path) -> Any:
    """A server file of raw bytes (32 bytes: eight float32 values), watched for any open."""
    watched = Canary(tmp_path / "server-secret.bin", np.arange(8, dtype=np.float32).tobytes())
    yield watched
    watched.close()


# Good files


def test_a_file_written_by_seed_000s_client_is_described_by_name_dtype_and_shapes(alice):
    entries: dict[str, list[np.ndarray]] = {
        "image": [np.zeros((1, 3, 4, 4), np.float32), np.ones((1, 3, 4, 4), np.float32)],
        "ids": [np.arange(3, dtype=np.int64), np.arange(5, dtype=np.int64)],
    }
    data = accepted(alice, "inputs.h5", h5_file(lambda h5f: dataset_entries_to_h5(entries, h5f)))
    assert (data["format"], data["num_records"]) == ("tensors", 2)
    assert data["metadata"] == {
        "file_format": "h5",
        "entries": [
            {"name": "image", "dtype": "float32", "shapes": [[1, 3, 4, 4], [1, 3, 4, 4]]},
            {"name": "ids", "dtype": "int64", "shapes": [[3], [5]]},
        ],
        "samples": 2,
    }


def test_the_hubs_h5_is_read_back_by_seed_000s_client_in_order_past_ten_entries(tmp_path):
    """Twelve entries: "10" sorts before "2" by name; the order attribute keeps them in order."""
    rng = np.random.default_rng(0)
    entries = {f"in{i}": [rng.standard_normal((2, i + 1)).astype(np.float32)] for i in range(12)}
    path = tensor_data.write_h5(entries, tmp_path / "out.h5")
    with h5py.File(path, "r") as h5f:
        theirs = h5_to_dataset_entries(h5f)
    assert list(theirs) == list(entries)
    for name, arrays in entries.items():
        np.testing.assert_array_equal(theirs[name][0], arrays[0])
    ours = tensor_data.read(path, "h5")
    assert list(ours) == list(entries)
    described = tensor_data.describe_here(path, "out.h5")
    assert [e["name"] for e in described["entries"]] == list(entries)


def test_seed_000s_h5_is_read_back_by_the_hub_as_written(tmp_path):
    entries = {"a": [np.arange(6, dtype=np.int32).reshape(2, 3)], "b": [np.array([True, False])]}
    path = tmp_path / "theirs.h5"
    with h5py.File(path, "w") as h5f:
        dataset_entries_to_h5(entries, h5f)
    read = tensor_data.read(path, "h5")
    assert list(read) == ["a", "b"]
    np.testing.assert_array_equal(read["a"][0], entries["a"][0])
    np.testing.assert_array_equal(read["b"][0], entries["b"][0])


def test_big_endian_values_are_read_in_this_machines_byte_order(tmp_path):
    values = np.arange(4, dtype=">f4")
    path = tmp_path / "be.npz"
    np.savez(path, x=values)
    (read,) = tensor_data.read(path, "npz")["x"]
    assert read.dtype.isnative and read.dtype == np.float32
    np.testing.assert_array_equal(read, [0, 1, 2, 3])


def test_an_npz_is_one_sample_per_array(alice):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((2, 8), np.float32), mask=np.ones(2, bool))
    data = accepted(alice, "one.npz", buffer.getvalue())
    assert data["metadata"]["file_format"] == "npz" and data["num_records"] == 1
    assert {e["name"]: e["dtype"] for e in data["metadata"]["entries"]} == {
        "x": "float32",
        "mask": "bool",
    }


# Files that reach outside themselves


@pytest.mark.parametrize("where", ["sample", "entry", "data"])
def test_an_external_link_is_refused_without_opening_the_file_it_names(alice, canary, where):
    link = h5py.ExternalLink(str(canary.path), "/secret")

    def build(h5f: h5py.File) -> None:
        if where == "data":
            h5f["data"] = h5py.ExternalLink(str(canary.path), "/")
        elif where == "entry":
            h5f.create_group("data")["0"] = link
        else:
            entry(h5f)["batch_0"] = link

    message = refused(alice, "linked.h5", h5_file(build))
    assert "is a link to another file; links are not followed" in message
    assert {"sample": "data/0/batch_0", "entry": "data/0", "data": "'data'"}[where] in message
    assert str(canary.path.parent) not in message
    assert not canary.opened()


def test_external_raw_storage_is_refused_without_opening_the_file(alice, raw_canary):
    def build(h5f: h5py.File) -> None:
        entry(h5f).create_dataset(
            "batch_0", shape=(8,), dtype="f4", external=[(str(raw_canary.path), 0, 32)]
        )

    message = refused(alice, "external.h5", h5_file(build))
    assert (
        "data/0/batch_0 ('x', sample 0 of batch_count 1) keeps its values in another file"
        in message
    )
    assert str(raw_canary.path.parent) not in message
    assert not raw_canary.opened()


def test_a_virtual_dataset_is_refused_without_opening_its_sources(alice, canary):
    def build(h5f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(8,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(canary.path), "secret", shape=(8,))
        entry(h5f).create_virtual_dataset("batch_0", layout)

    message = refused(alice, "virtual.h5", h5_file(build))
    assert (
        "data/0/batch_0 ('x', sample 0 of batch_count 1) keeps its values in another file"
        in message
    )
    assert not canary.opened()


def test_a_soft_link_is_refused(alice):
    def build(h5f: h5py.File) -> None:
        h5f["elsewhere"] = np.zeros(8, np.float32)
        entry(h5f)["batch_0"] = h5py.SoftLink("/elsewhere")

    message = refused(alice, "soft.h5", h5_file(build))
    assert "data/0/batch_0 ('x', sample 0 of batch_count 1) is a link (to '/elsewhere'" in message


# Files that are not what they say


def test_a_missing_sample_is_refused_naming_it(alice):
    def build(h5f: h5py.File) -> None:
        group = entry(h5f, count=3)
        group["batch_0"] = np.zeros(2, np.float32)
        group["batch_2"] = np.zeros(2, np.float32)

    message = refused(alice, "gap.h5", h5_file(build))
    assert "data/0/batch_1 ('x', sample 1 of batch_count 3) is missing." in message


def test_samples_past_batch_count_are_refused_rather_than_left_out(alice):
    def build(h5f: h5py.File) -> None:
        group = entry(h5f, count=1)
        for j in range(3):
            group[f"batch_{j}"] = np.zeros(2, np.float32)

    message = refused(alice, "more.h5", h5_file(build))
    assert "data/0 ('x') holds batch_1, batch_2 beyond its batch_count 1" in message


def test_entries_with_different_batch_counts_are_refused_naming_each(alice):
    entries = {"x": [np.zeros(2, np.float32)] * 3, "y": [np.zeros(2, np.float32)] * 2}
    message = refused(alice, "uneven.h5", h5_file(lambda h5f: dataset_entries_to_h5(entries, h5f)))
    assert "different numbers of samples (x: 3, y: 2)" in message


@pytest.mark.parametrize(
    ("count", "words"),
    [
        (0, "data/0 ('x') has batch_count 0; it must be how many samples (batch_0, batch_1, …) "
            "the entry holds, at least 1."),
        (-1, "data/0 ('x') has batch_count -1; it must be how many samples"),
        ("3", "data/0 ('x') has batch_count '3'; it must be a whole number: how many samples"),
        (2.5, "data/0 ('x') has batch_count 2.5; it must be a whole number"),
        ([1, 2], "data/0 ('x') has batch_count [1, 2]; it must be a whole number"),
        (None, "data/0 ('x') has no batch_count attribute (its number of samples)."),
    ],
)  # fmt: skip
def test_a_batch_count_that_is_not_a_number_of_samples_is_refused_saying_what_it_is(
    alice, count, words
):
    def build(h5f: h5py.File) -> None:
        group = entry(h5f)
        group["batch_0"] = np.zeros(2, np.float32)
        if count is None:
            del group.attrs["batch_count"]
        else:
            group.attrs["batch_count"] = count

    assert words in refused(alice, "count.h5", h5_file(build))


def test_more_samples_than_a_dataset_takes_are_refused_saying_how_many_and_what_to_do(alice):
    """Seed 000's client writes batch_count as the number of samples it was given."""
    entries = {"x": [np.zeros(1, np.float32)] * 10_001}
    message = refused(alice, "many.h5", h5_file(lambda h5f: dataset_entries_to_h5(entries, h5f)))
    assert message == (
        "many.h5: 'x' has 10001 samples; a dataset takes at most 10000 (split it into several)."
    )


def test_two_entries_of_the_same_name_are_refused_naming_it(alice):
    def build(h5f: h5py.File) -> None:
        for index in range(2):
            entry(h5f, index=index, name="pixels")["batch_0"] = np.zeros(2, np.float32)

    message = refused(alice, "twice.h5", h5_file(build))
    assert "two entries are named pixels; each input's samples are one entry." in message


def test_a_member_of_an_npz_that_is_not_an_array_is_refused_saying_what_an_npz_holds(alice):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    message = refused(alice, "notes.npz", buffer.getvalue())
    assert (
        "it holds readme.txt, which is not an array: a .npz holds one <input name>.npy" in message
    )


def test_an_entry_name_with_control_characters_is_refused_shown_escaped(alice):
    """PostgreSQL's JSON cannot hold NUL; a terminal code in a name would reach pages and logs."""

    def build(h5f: h5py.File) -> None:
        group = entry(h5f)
        group.attrs["name"] = np.bytes_(b"x\x00y\x1b[31m")  # fixed-length bytes keep the NUL
        group["batch_0"] = np.zeros(2, np.float32)

    message = refused(alice, "names.h5", h5_file(build))
    assert "an entry's name ('x\\x00y\\x1b[31m') is not an input name" in message
    assert "\x00" not in message and "\x1b" not in message
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, archive.open("a\u2028b.npy", "w") as member:
        np.save(member, np.zeros(2, np.float32))
    message = refused(alice, "names.npz", buffer.getvalue())
    assert "an entry's name ('a\\u2028b') is not an input name" in message


def test_an_entry_name_past_256_characters_is_refused_shown_cut(alice):
    def build(h5f: h5py.File) -> None:
        group = entry(h5f, name="x" * 100_000)
        group["batch_0"] = np.zeros(2, np.float32)

    message = refused(alice, "long.h5", h5_file(build))
    assert "is not an input name: at most 256 characters" in message
    assert len(message) < 300


def test_strings_in_an_h5_are_refused(alice):
    def build(h5f: h5py.File) -> None:
        entry(h5f).create_dataset("batch_0", data=["a", "b"], dtype=h5py.string_dtype())

    message = refused(alice, "strings.h5", h5_file(build))
    assert "'x' holds strings or Python objects" in message


def test_python_objects_in_an_npz_are_refused_unread(alice):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}, None], dtype=object))
    message = refused(alice, "objects.npz", buffer.getvalue())
    assert "'x' holds Python objects; the hub takes arrays of bool, float16" in message


def npz_declaring(shape: tuple[int, ...], claimed_size: int | None = None) -> bytes:
    """A .npz whose one member's header declares ``shape`` of float32, followed by 16 bytes;
    ``claimed_size``: what the zip's own headers say the member holds (they can lie)."""
    header = io.BytesIO()
    npformat.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(16))
    data = bytearray(buffer.getvalue())
    if claimed_size is not None:
        local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
        data[local + 22 : local + 26] = struct.pack("<I", claimed_size)
        data[central + 24 : central + 28] = struct.pack("<I", claimed_size)
    return bytes(data)


def test_an_npz_member_declaring_a_huge_shape_is_refused(alice):
    message = refused(alice, "huge.npz", npz_declaring((10**12,)))
    assert (
        "'x' declares a shape of [1000000000000], more values than it holds: the file is "
        "damaged, or was not written by numpy." in message
    )


def test_an_npz_whose_zip_headers_lie_about_the_size_is_refused_by_the_values_it_declares(alice):
    message = refused(alice, "liar.npz", npz_declaring((10**9,), claimed_size=4 * 10**9))
    assert "its arrays hold 4,000,000,000 bytes of values once read" in message
    assert "'x', is float32 of shape [1000000000]" in message


def test_compressed_h5_samples_declaring_gigabytes_are_refused_before_a_worker_reads_them(alice):
    """Chunks never written read as zeros: a few kilobytes declare 400 GB."""

    def build(h5f: h5py.File) -> None:
        entry(h5f).create_dataset(
            "batch_0", shape=(100_000, 100_000, 10), dtype="f4", chunks=(10, 100, 10),
            compression="gzip",
        )  # fmt: skip

    data = h5_file(build)
    assert len(data) < 100_000
    message = refused(alice, "bomb.h5", data)
    assert "its arrays hold 400,000,000,000 bytes of values once read" in message
    assert "the hub reads at most 1,073,741,824" in message


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("noise.h5", bytes(range(256)) * 64, "an h5 file"),
        ("noise.npz", bytes(range(256)) * 64, "a .npz"),
        ("cut.h5", None, "an h5 file"),
    ],
)
def test_a_corrupt_file_is_refused_as_unreadable(alice, name, data, kind):
    if data is None:  # a real file cut short
        whole = h5_file(lambda h5f: dataset_entries_to_h5({"x": [np.zeros(4096)]}, h5f))
        data = whole[: len(whole) // 2]
    message = refused(alice, name, data)
    assert f"it is not {kind} that can be read" in message


def test_an_h5_without_seed_000s_layout_says_what_the_layout_is(alice):
    message = refused(alice, "plain.h5", h5_file(lambda h5f: h5f.create_dataset("x", data=[1])))
    assert "it has no group 'data' (seed 000's h5 layout: data/<i>/batch_<j>)" in message


# The checking child's limits


def many_members(count: int) -> bytes:
    """A zip of ``count`` empty members: a few bytes each on disk, several hundred each in
    memory once its directory is read."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(zipfile.ZipInfo(f"{i}.npy"), b"")
    return buffer.getvalue()


def test_a_file_whose_headers_take_more_memory_than_the_check_allows_is_refused_saying_so(
    alice, monkeypatch
):
    """200,000 members take about 110 MB to list: past a 96 MiB limit, the child stops and the
    upload is refused naming the limit; within the usual one (1 GiB), it is refused by its
    count. The web process never lists them itself."""
    data = many_members(200_000)
    message = refused(alice, "many.npz", data)
    assert "it has 200000 arrays, one per input; a dataset takes at most 256 inputs." in message
    monkeypatch.setattr(tensor_data, "CHECK_MEMORY", 96 * 1024**2)
    message = refused(alice, "many.npz", data)
    assert "reading its headers needed more than 96 MiB of memory" in message


# Whether entries fit a model


def test_misfits_names_each_problem_and_nothing_when_they_fit():
    specs = {
        "image": {"shape": ["batch", 3, 8, 8], "dtype": "float32"},
        "scale": {"shape": [1], "dtype": "float32"},
    }
    fitting = [
        {"name": "image", "dtype": "float32", "shapes": [[1, 3, 8, 8], [4, 3, 8, 8]]},
        {"name": "scale", "dtype": "float32", "shapes": [[1], [1]]},
    ]
    assert tensor_data.misfits(fitting, specs) == []
    wrong = [
        {"name": "image", "dtype": "float16", "shapes": [[1, 3, 8, 8], [1, 3, 8]]},
        {"name": "extra", "dtype": "int64", "shapes": [[1], [1]]},
    ]
    assert tensor_data.misfits(wrong, specs) == [
        "missing 'scale'",
        "'extra' not an input of the model",
        "'image' is float16, the model takes float32",
        "'image' sample 1 has shape [1, 3, 8], the model takes ['batch', 3, 8, 8]",
    ]
