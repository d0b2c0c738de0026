"""blip_serving.versions: numbered, immutable artifact sets; a build's staging directory becomes the next version
only whole; pruning keeps the newest and never fewer than two."""

from __future__ import annotations

import os
import time

import pytest

from blip_serving.manifest import MANIFEST
from blip_serving.versions import (
    STAGING_PREFIX,
    VersionError,
    VersionStore,
    parse_version,
    read_version_file,
)


def finished(store: VersionStore, marker: str) -> int:
    staging = store.staging()
    (staging / MANIFEST).write_text("{}")
    (staging / "weights.pt").write_text(marker)
    return store.commit(staging)


def test_builds_become_the_next_version_only_when_whole(tmp_path) -> None:
    store = VersionStore(tmp_path / "cpu")
    assert store.versions() == [] and store.latest() is None
    assert finished(store, "a") == 1 and finished(store, "b") == 2
    unfinished = store.staging()
    with pytest.raises(VersionError, match=r"holds no manifest\.json: the build did not finish"):
        store.commit(unfinished)
    (store.root / "3").mkdir()  # a directory without its manifest is not a version
    (store.root / "notes").mkdir()
    assert store.versions() == [1, 2] and store.latest() == 2
    assert (store.path(1) / "weights.pt").read_text() == "a"
    with pytest.raises(VersionError, match=r"model version 7 is not in .* \(versions there: 1, 2\)"):
        store.path(7)


def test_a_version_is_never_written_again(tmp_path) -> None:
    store = VersionStore(tmp_path / "cpu")
    finished(store, "a")
    staging = store.staging()
    (staging / MANIFEST).write_text("{}")
    (store.root / "2").mkdir()
    (store.root / "2" / "partial").write_text("another build took 2 first")
    with pytest.raises(VersionError, match=r"cannot make .* version 2"):
        store.commit(staging)
    assert (store.root / "2" / "partial").read_text() == "another build took 2 first"


def test_prune_keeps_the_newest_and_clears_old_staging(tmp_path) -> None:
    store = VersionStore(tmp_path / "cpu")
    for marker in "abcde":
        finished(store, marker)
    old_staging, fresh_staging = store.staging(), store.staging()
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old_staging, (day_ago, day_ago))
    with pytest.raises(VersionError, match="keep must be at least 2"):
        store.prune(1)
    assert store.prune(3) == [1, 2] and store.versions() == [3, 4, 5]
    assert not old_staging.exists() and fresh_staging.exists(), "a recent staging may be a build still running"
    assert sorted(p.name.startswith(STAGING_PREFIX) for p in store.root.iterdir()) == [False, False, False, True]
    assert store.prune(3) == []


@pytest.mark.parametrize(("text", "version"), [("2", 2), (" v3\n", 3), ("10", 10)])
def test_versions_as_operators_write_them(text, version) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "", "v"])
def test_anything_else_is_refused_naming_it(text) -> None:
    with pytest.raises(VersionError, match="is not a model version"):
        parse_version(text)


def test_the_version_file(tmp_path) -> None:
    path = tmp_path / "version"
    assert read_version_file(path) is None
    path.write_text("2\n")
    assert read_version_file(path) == 2
    path.write_text("latest")
    with pytest.raises(VersionError, match="'latest' is not a model version"):
        read_version_file(path)
