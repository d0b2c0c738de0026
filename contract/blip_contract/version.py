"""The project's version, read once from the installed distribution's metadata (``pyproject.toml``'s ``version``).

Every command line's ``--version``, the API's OpenAPI ``info.version`` and the images' labels say this one value.
Two distributions carry this module: the whole project (``blip-vqa-triton``) and the light client
(``blip-vqa-client``, ``client/dist``); whichever is installed answers. A source tree run without installing (the
API image, which copies only the code it runs, and ``pyproject.toml``) reads the same field from that file. A test
holds the two ``version`` fields and the CHANGELOG's newest release to the same value.
"""

from __future__ import annotations

import argparse
import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTIONS = ("blip-vqa-triton", "blip-vqa-client")
# contract/blip_contract/version.py -> the tree's pyproject.toml
SOURCE_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def installed_version() -> str:
    """The version of the first of ``DISTRIBUTIONS`` that is installed, else the source tree's ``pyproject.toml``."""
    for name in DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        return str(tomllib.loads(SOURCE_PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


__version__ = installed_version()


def add_version_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version``: the program's name and the package version, then exit 0 (argparse's own action)."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} {__version__}")
    return parser
