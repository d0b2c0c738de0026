"""Tests mirror modules: every source module has ``test_<name>.py`` or a row in docs/development.md's map."""

from __future__ import annotations

import re

from tests.conftest import ROOT

PACKAGES = {
    "blip_serving": "blip_serving",
    "blip_api": "client/blip_api",
    "blip_client": "client/blip_client",
    "blip_contract": "contract/blip_contract",
    "blip_images": "contract/blip_images",
    "blip_events": "client/blip_events",
    "blip_build": "build/blip_build",
    "blip_bench": "benchmarks/blip_bench",
}
MAP = ROOT / "docs" / "development.md"


def source_modules() -> dict[str, str]:
    """Dotted module name -> its test name (``<package>/test_<stem>`` or ``test_<stem>``), every module with code."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name not in ("__init__.py", "__main__.py"):
                relative = path.relative_to(ROOT / folder).with_suffix("")
                found[".".join((package, *relative.parts))] = f"{package}/{path.stem}"
    return found


def mapped() -> dict[str, list[str]]:
    section = MAP.read_text().split("## Where a module's tests are", 1)[1]
    rows = re.findall(r"^\| `([\w.]+)` \| (.+) \|$", section, re.MULTILINE)
    return {module: re.findall(r"`(tests/[\w/]+\.py)`", tests) for module, tests in rows}


def own_test(name: str) -> bool:
    """``tests/<tier>/<package>/test_<stem>.py``, or ``tests/<tier>/test_<stem>.py`` (the older, flat layout)."""
    package, stem = name.split("/")
    return any(
        (ROOT / "tests" / tier / package / f"test_{stem}.py").is_file()
        or (ROOT / "tests" / tier / f"test_{stem}.py").is_file()
        for tier in ("unit", "integration")
    )


def test_every_module_has_its_own_test_file_or_a_row_in_the_map() -> None:
    table = mapped()
    unplaced = [module for module, name in source_modules().items() if not own_test(name) and module not in table]
    assert not unplaced, f"no tests/unit/test_<name>.py and no row in docs/development.md for: {unplaced}"


def test_every_row_names_a_module_and_tests_that_exist() -> None:
    modules = source_modules()
    for module, tests in mapped().items():
        assert module in modules, f"docs/development.md maps {module}, which does not exist"
        assert not own_test(modules[module]), f"{module} has its own test file; its row is not needed"
        assert tests, f"{module}'s row names no test file"
        for test in tests:
            assert (ROOT / test).is_file(), f"{module}'s row names {test}, which does not exist"
