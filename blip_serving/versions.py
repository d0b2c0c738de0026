"""Immutable model versions: each build of a target is a numbered artifact set, ``artifacts/<target>/<N>/``, with
its own manifest, and serving loads a chosen one.

Why numbered directories and not one folder rewritten in place: a rebuild (a new fine-tuned checkpoint, a new Neuron
release) must never touch what fleets are serving, or a pod that restarts mid-build loads half of each, and there is
no rollback. So a build writes into a staging directory beside the versions and renames it to the next number only
once every artifact is written and verified (a rename within one directory is atomic on POSIX file systems and on
EFS); an existing version is never written again. A build whose checkpoint, spec, target and code are those of the
newest version adds none: it is that version.

Serving names its version (``blip-serve --model-version``, or the file ``--model-version-file`` names, which a
Kubernetes ConfigMap fills) and switches between versions live through Triton's model control
(``blip_serving.triton.process.TritonServer.switch_version``). ``keep`` versions stay; older ones are removed by the
build that goes past the count, never the newest two, so that a rollback always has a version to go to.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from blip_serving.errors import ArtifactError
from blip_serving.manifest import MANIFEST, Manifest, read_manifest

DEFAULT_KEEP = 3
MIN_KEEP = 2  # the served version and one to roll back to
_VERSION = re.compile(r"[1-9][0-9]*")
STAGING_PREFIX = ".staging-"


class VersionError(ArtifactError):
    """A version that does not exist, is not whole, or cannot be written: one line naming it."""


def parse_version(text: str) -> int:
    """A version as an operator writes it (``2``, ``v2``, with surrounding blanks); ``VersionError`` otherwise."""
    value = text.strip().removeprefix("v")
    if not _VERSION.fullmatch(value):
        raise VersionError(f"{text.strip()!r} is not a model version (a positive whole number, such as 2)")
    return int(value)


@dataclass(frozen=True)
class VersionStore:
    """The versions of one target's artifacts: ``root`` is ``artifacts/<target>``."""

    root: Path

    def versions(self) -> list[int]:
        """Every whole version, oldest first (a directory without its manifest is a build that never finished)."""
        if not self.root.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in self.root.iterdir()
            if _VERSION.fullmatch(entry.name) and (entry / MANIFEST).is_file()
        )

    def latest(self) -> int | None:
        found = self.versions()
        return found[-1] if found else None

    def path(self, version: int) -> Path:
        """The directory of ``version``, which must exist and be whole."""
        directory = self.root / str(version)
        if version not in self.versions():
            have = ", ".join(map(str, self.versions())) or "none"
            raise VersionError(f"model version {version} is not in {self.root} (versions there: {have})")
        return directory

    def manifest(self, version: int) -> Manifest:
        return read_manifest(self.path(version))

    def staging(self) -> Path:
        """A new, empty directory beside the versions to build into; ``commit`` or ``discard`` it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))

    def commit(self, staging: Path) -> int:
        """Give the finished build in ``staging`` the next number, atomically; return it."""
        if not (staging / MANIFEST).is_file():
            raise VersionError(f"{staging} holds no {MANIFEST}: the build did not finish, so it is not a version")
        version = (self.latest() or 0) + 1
        target = self.root / str(version)
        try:
            # os.rename onto a path that exists fails (on a directory that is not empty): another build that took
            # the same number first keeps it, and this one is refused rather than mixed in.
            os.rename(staging, target)
        except OSError as error:
            raise VersionError(f"cannot make {staging} version {version}: {error}") from None
        return version

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def prune(self, keep: int) -> list[int]:
        """Remove the oldest versions beyond ``keep`` (at least ``MIN_KEEP``), and staging left by killed builds;
        return the versions removed."""
        if keep < MIN_KEEP:
            raise VersionError(f"keep must be at least {MIN_KEEP} (the served version and one to roll back to)")
        removed = self.versions()[:-keep]
        for version in removed:
            shutil.rmtree(self.root / str(version))
        for entry in self.root.glob(f"{STAGING_PREFIX}*"):
            if entry.is_dir() and not _is_recent(entry):
                shutil.rmtree(entry, ignore_errors=True)
        return removed


def _is_recent(path: Path, seconds: float = 24 * 3600) -> bool:
    """A staging directory younger than a day may be another build's, still running."""
    return time.time() - path.stat().st_mtime < seconds


def read_version_file(path: Path) -> int | None:
    """The version a file names (a ConfigMap's key, or a file written by hand); None where it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise VersionError(f"cannot read the model version from {path}: {error}") from None
    return parse_version(text)
