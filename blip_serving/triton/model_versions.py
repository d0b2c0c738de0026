"""Which model version a server's stubs load, written into the server's repository view, never into the repository.

The repository's configs name the version the last build made (``artifact_dir``: ``../artifacts/<target>/<N>``). A
server may serve another (``blip-serve --model-version``): its view (``TritonServer.repository_view``) holds, for
each Python model of the layout, a folder of its own whose ``1/`` links to the repository's code and whose config is
the repository's with ``artifact_dir`` pointing at the chosen version. Ensembles are links, as before.

A live switch rewrites those configs (each atomically) and asks Triton to load each Python model again: Triton loads
the new instance beside the old and replaces it only once it is ready, so no request is refused (Triton's model
management: "if the reload succeeds, the newly loaded model replaces the loaded one without losing availability";
a failed reload leaves the old one serving). The supervisor's later reloads and restarts read the same view, so they
keep the version switched to. Both versions must share the spec the configs were generated for: that is checked
before anything is touched, so a switch cannot leave an ensemble's components on two incompatible versions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from blip_serving.errors import ArtifactError
from blip_serving.layouts import Layout
from blip_serving.manifest import read_manifest
from blip_serving.model_config import CONFIGS_DIR, parse, stub_parameters, with_artifact_dir
from blip_serving.versions import VersionError, VersionStore, parse_version


@dataclass(frozen=True)
class ServedVersion:
    """The artifact directory a server's stubs load: a version of ``store``, or a directory outside any store."""

    directory: Path
    store: VersionStore | None
    version: int | None

    def describe(self) -> str:
        return f"model version {self.version} ({self.directory})" if self.version else str(self.directory)


def configured(repository: Path, layout: Layout, config_name: str) -> ServedVersion:
    """What the repository's configs name (the first Python model's; every build writes them all alike)."""
    model = layout.python_models[0]
    text = (repository / model / CONFIGS_DIR / f"{config_name}.pbtxt").read_text()
    directory = (repository / stub_parameters(parse(text)).artifact_dir).resolve()
    store = VersionStore(directory.parent)
    try:
        version = parse_version(directory.name)
    except VersionError:
        return ServedVersion(directory, None, None)
    return ServedVersion(directory, store, version)


def choose(repository: Path, layout: Layout, config_name: str, version: int | None) -> ServedVersion:
    """The version to serve: ``version`` of the configs' store, or the configs' own when None."""
    found = configured(repository, layout, config_name)
    if version is None:
        return found
    if found.store is None:
        raise VersionError(
            f"{found.directory} is not a model version (artifacts/<target>/<N>): rebuild with make build-artifacts "
            f"to serve version {version}"
        )
    return ServedVersion(found.store.path(version), found.store, version)


def check_compatible(current: ServedVersion, wanted: ServedVersion) -> None:
    """Refuse, in one line, a version built for another target or spec than the one being served."""
    old, new = read_manifest(current.directory), read_manifest(wanted.directory)
    if old.target_name != new.target_name:
        raise VersionError(f"{wanted.describe()} holds {new.target_name!r} artifacts, not {old.target_name!r}")
    if old.record.spec != new.record.spec:
        changed = sorted(
            k
            for k in old.record.spec.keys() | new.record.spec.keys()
            if old.record.spec.get(k) != new.record.spec.get(k)
        )
        raise VersionError(
            f"{wanted.describe()} was built for another spec ({', '.join(changed)} differ) than "
            f"{current.describe()}: its configs differ, so it is served by a restart (blip-serve --model-version), "
            "not switched live"
        )


def write_view(view: Path, repository: Path, layout: Layout, config_name: str, served: ServedVersion | None) -> None:
    """The layout's models in ``view``: ensembles as links, Python models as folders whose config names
    ``served``'s directory (None: every model a link, serving the repository's configs as they are). Rewriting an
    existing view's configs is how a switch starts."""
    for name in layout.served_models:
        entry = view / name
        if served is None or name not in layout.python_models:
            if not entry.is_symlink():
                entry.symlink_to(repository / name, target_is_directory=True)
            continue
        (entry / CONFIGS_DIR).mkdir(parents=True, exist_ok=True)
        code = entry / "1"
        if not code.is_symlink():
            code.symlink_to(repository / name / "1", target_is_directory=True)
        source = repository / name / CONFIGS_DIR / f"{config_name}.pbtxt"
        try:
            text = with_artifact_dir(source.read_text(), str(served.directory))
        except ArtifactError as error:
            raise VersionError(f"{source}: {error}") from None
        path = entry / CONFIGS_DIR / f"{config_name}.pbtxt"
        temporary = path.with_suffix(".pbtxt.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)  # Triton, loading at any moment, reads the old config or the new, never half
