"""docs/environment.md from the code: every ``BLIP_`` variable a command reads, where, and what it sets.

``python tools/env_reference.py`` (``make env-reference``) writes the page; ``--check`` fails, naming the
difference, when the page is not what the code reads (tests/unit/test_env_reference.py runs it). A variable is
found where the code reads it, through ``blip_contract.env``:

- ``env_default("NAME")``, ``env_flag("NAME")``, ``env_name("NAME")``, also through a module-level constant
  (``STUB_PYTHON = "STUB_PYTHON"``), or through a helper's parameter (``_int_env("INSTANCES")``);
- a module-level ``"BLIP_NAME"`` string (the API tier's token variables).

What it sets is the command-line flag's help where the read is that flag's default, else a line of ``NOTES``
below; a variable with neither fails the run, so that nothing is read undocumented.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("blip_serving", "build", "client", "benchmarks", "contract")
PAGE = ROOT / "docs" / "environment.md"
PREFIX = "BLIP_"
READERS = {"env_default", "env_flag", "env_name"}
LITERAL = re.compile(r"BLIP_([A-Z][A-Z0-9_]*)")

# What a variable sets, where no flag's help says it (read outside argparse, or by a flag whose help is built).
NOTES = {
    "API_TOKEN": "the callers' bearer token for POST /v1/frames (required unless --insecure-dev)",
    "API_ADMIN_TOKEN": "the admin bearer token for /admin/* (unset: the admin API answers 403)",
    "DB_URL": "the event store's SQLAlchemy URL (default: SQLite in the working directory; postgresql+psycopg://...)",
    "MQTT_PASSWORD": "the password of [mqtt] username, for the broker the events are published to",
    "TOKEN_HASH_KEY": "the key of the cameras' token hashes (HMAC-SHA256; else one made and kept in the store)",
    "LOG_LEVEL": "log level of every long-running command: debug, info (default), warning, error",
    "LOG_JSON": "1: one JSON object per log line (python-json-logger), uvicorn's lines and the access line included",
    "STUB_PYTHON": "the Python that Triton's Python backend stub runs (default: the serving venv's); needs numpy < 2",
    "TRITON_ROOT": "a Triton installation (bin/tritonserver, backends/); default /opt/tritonserver (the NGC images'), else nvidia-pytriton's",
    "MALLOC_TRIM": "the stubs hand freed memory back (glibc malloc_trim): always (default, at most once a second per execute), execute, or 0 (off)",
    "ALLOW_UNVERIFIED": "1: a stub loads artifacts whose sha256 is not in the manifest (development only)",
    "NEURON_ALLOCATION": "set by the fleet itself: the NeuronCores the device plugin allocated (NEURON_RT_VISIBLE_CORES at start), kept before each instance narrows that to its own cores",
    "QUESTION_BUCKETS": "static question-length buckets the text models are traced for",
    "IMAGE_BATCH_BUCKETS": "static image batch sizes the image encoder is traced for",
    "QUESTION_BATCH_BUCKETS": "static question batch sizes the text models are traced for",
    "KEEP_VERSIONS": "artifact versions a build keeps (older ones are pruned; at least 2)",
    "NAIVE_FRAMES": "frames of the naive transformers baseline in make bench",
    "GPU_CHECK_BUDGET_S": "seconds the GPU check may spend on the lent GPU",
    "API_CONFIG": "the API tier's config file (default: client/api.toml)",
    "API_PORT": "the API tier's port (default 8080)",
    "FORCE": "1: blip-build rebuilds artifacts that are already up to date",
    "HTTP_PORT": "Triton's HTTP port (default 8000); blip-client's default fleet URL",
    "GRPC_PORT": "Triton's gRPC port (default 8001)",
    "METRICS_PORT": "Triton's metrics port (default 8002)",
    "LAYOUT": "ensemble or colocated (default: the placement plan's, else ensemble)",
    "TARGET": "cpu, gpu or neuron (default cpu)",
    "TRITON_URL": "blip-client's fleet (host:port; default 127.0.0.1:BLIP_HTTP_PORT)",
    "SLO_MS": "make perf: the p99 objective the knee is found under (ms)",
    "PERF_CONCURRENCY": "make perf: the concurrency sweep (comma-separated)",
    "PERF_INSTANCES": "make perf: the instance counts swept",
    "PERF_LAYOUTS": "make perf: the layouts swept",
}


@dataclass
class Read:
    modules: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)
    helps: set[str] = field(default_factory=set)


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _constants(tree: ast.Module) -> dict[str, str]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _string(node.value)
            if value is not None:
                found[node.targets[0].id] = value
    return found


def _called(node: ast.Call) -> str | None:
    return (
        node.func.id
        if isinstance(node.func, ast.Name)
        else node.func.attr
        if isinstance(node.func, ast.Attribute)
        else None
    )


def _note(read: Read, module: str, call: ast.Call, parents: dict[ast.AST, ast.AST]) -> None:
    """``call`` reads the variable in ``module``; where it is an argparse flag's default, that flag and its help."""
    read.modules.add(module)
    node: ast.AST = call
    while node in parents and not (isinstance(node, ast.Call) and _called(node) == "add_argument"):
        node = parents[node]
    if isinstance(node, ast.Call) and _called(node) == "add_argument":
        flag = next((s for s in map(_string, node.args) if s and s.startswith("--")), None)
        if flag:
            read.flags.add(flag)
        text = next((_string(k.value) for k in node.keywords if k.arg == "help"), None)
        if text:
            read.helps.add(text)


def scan(sources: list[Path], root: Path) -> dict[str, Read]:
    """Every variable read in ``sources`` -> where, and by which flags with which help."""
    trees = {path: ast.parse(path.read_text()) for path in sources}
    constants: dict[str, str] = {}
    for tree in trees.values():
        constants |= _constants(tree)
    reads: dict[str, Read] = defaultdict(Read)
    for path, tree in trees.items():
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(p for p in parts[parts[0] != "blip_serving" :] if p != "__init__")
        local = constants | _constants(tree)
        helpers: dict[str, int] = {}  # a function whose parameter is what it reads -> that parameter's position
        parents: dict[ast.AST, ast.AST] = {
            child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)
        }

        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in READERS and node.args:
                first = node.args[0]
                name = _string(first) or (local.get(first.id) if isinstance(first, ast.Name) else None)
                if name is not None:
                    _note(reads[name], module, node, parents)
                elif isinstance(first, ast.Name):
                    function = node
                    while function in parents and not isinstance(function, ast.FunctionDef):
                        function = parents[function]
                    if isinstance(function, ast.FunctionDef):
                        names = [a.arg for a in function.args.args]
                        if first.id in names:
                            helpers[function.name] = names.index(first.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = LITERAL.fullmatch(node.value)
                if match and not isinstance(parents.get(node), ast.Expr):  # not a docstring
                    reads[match.group(1)].modules.add(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in helpers and len(node.args) > helpers[_called(node)]:
                name = _string(node.args[helpers[_called(node)]])
                if name is not None:
                    _note(reads[name], module, node, parents)
    return reads


def render(reads: dict[str, Read]) -> str:
    missing = sorted(name for name, read in reads.items() if not read.helps and name not in NOTES)
    if missing:
        raise SystemExit(
            f"undocumented variable(s): {', '.join(PREFIX + n for n in missing)}: add a flag help or NOTES"
        )
    lines = [
        "# Environment variables",
        "",
        "Written by `make env-reference` (tools/env_reference.py) from the code: every `BLIP_` variable a command",
        "reads, do not edit by hand. A command's flag wins over its variable; an empty variable is unset; nothing",
        "reads an unprefixed name (blip_contract.env). The Makefile exports its variables under these names",
        "(`make serve HTTP_PORT=9000` is `BLIP_HTTP_PORT=9000`). OpenTelemetry's own `OTEL_*` variables set tracing",
        '(docs/operations.md, "Traces").',
        "",
        "| variable | flag | read by | what it sets |",
        "|---|---|---|---|",
    ]
    for name in sorted(reads):
        read = reads[name]
        what = "; ".join(sorted(read.helps)) or NOTES[name]
        flags = ", ".join(f"`{f}`" for f in sorted(read.flags)) or "-"
        modules = ", ".join(f"`{m}`" for m in sorted(read.modules))
        lines.append(f"| `{PREFIX}{name}` | {flags} | {modules} | {what.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def sources(root: Path) -> list[Path]:
    return sorted(p for folder in SOURCES for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/environment.md is not the code's")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    text = render(scan(sources(args.root), args.root))
    page = args.root / "docs" / "environment.md"
    if not args.check:
        page.write_text(text)
        return 0
    current = page.read_text() if page.is_file() else ""
    if current != text:
        diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True), "docs", "code", n=0))
        print(f"docs/environment.md is not what the code reads (make env-reference):\n{diff}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
