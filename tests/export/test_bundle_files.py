"""The one check of a directory against its sha256 list, and where a bundle half's files are."""

from __future__ import annotations

import pytest

from edge_runtime.bundle import (
    TAIL_WEIGHTS,
    BundleError,
    FileMismatch,
    load_bundle,
    mismatched_files,
    read_manifest,
    sha256_listing,
    sha256_under,
)


def test_listing_then_checking_a_directory(tmp_path) -> None:
    (tmp_path / "edge" / "split").mkdir(parents=True)
    (tmp_path / "edge" / "a.bin").write_bytes(b"a")
    (tmp_path / "edge" / "split" / "b.bin").write_bytes(b"b")
    (tmp_path / "other.txt").write_text("not listed")
    listed = sha256_listing(tmp_path, tmp_path / "edge")
    assert list(listed) == ["edge/a.bin", "edge/split/b.bin"]
    assert mismatched_files(listed, sha256_under(tmp_path)) == []

    (tmp_path / "edge" / "a.bin").write_bytes(b"changed")
    (tmp_path / "edge" / "split" / "b.bin").unlink()
    bad = mismatched_files(listed, sha256_under(tmp_path))
    assert [(b.rel, b.actual is None) for b in bad] == [
        ("edge/a.bin", False),
        ("edge/split/b.bin", True),
    ]
    assert bad[0].expected == listed["edge/a.bin"] != bad[0].actual
    assert mismatched_files(listed, sha256_under(tmp_path), first_only=True) == bad[:1]


def test_checking_hashes_reported_from_elsewhere() -> None:
    # What a deploy does with the hashes `sha256sum` printed on a board.
    listed = {"r/x": "1" * 64, "r/y": "2" * 64}
    reported = {"r/x": "1" * 64, "r/y": "3" * 64}
    assert mismatched_files(listed, reported.get) == [FileMismatch("r/y", "2" * 64, "3" * 64)]


def test_a_half_and_the_whole_bundle_find_the_same_files(exported) -> None:
    root = exported("smallcnn", 2)
    whole, cloud = load_bundle(root), load_bundle(root / "cloud")
    assert whole.side_path("cloud", TAIL_WEIGHTS) == cloud.side_path("cloud", TAIL_WEIGHTS)
    assert whole.side_dir("edge") == root / "edge"
    with pytest.raises(BundleError, match="is the cloud half of a bundle: it has no edge files"):
        cloud.side_dir("edge")


def test_one_manifest_reader_names_what_is_wrong(tmp_path) -> None:
    path = tmp_path / "m.json"
    kinds = dict(what="a thing", make="make-it", remake="remake-it")
    with pytest.raises(
        BundleError, match=r"is not a thing: no m\.json \(make one with `make-it`\)"
    ):
        read_manifest(path, "fmt/1", **kinds)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="is not valid JSON"):
        read_manifest(path, "fmt/1", **kinds)
    path.write_text('{"format": "fmt/0"}')
    with pytest.raises(
        BundleError, match=r"has format 'fmt/0'; this version reads 'fmt/1' \(remake-it\)"
    ):
        read_manifest(path, "fmt/1", **kinds)
    path.write_text('{"format": "fmt/1", "files": {}}')
    assert read_manifest(path, "fmt/1", **kinds) == (
        {"format": "fmt/1", "files": {}},
        path.read_bytes(),
    )
