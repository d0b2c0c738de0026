"""Plant the operational bugs of issue 22 one at a time and say which unit tests fail on each.

Each bug is a small, realistic edit of the real source (a branch removed, a bound off by one). The file is restored
after each run, also on Ctrl-C. Usage: ``.venv/bin/python tools/planted_bugs.py [name ...]``; exit status 1 when a
planted bug passes the unit suite.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    path: str
    old: str
    new: str


BUGS = (
    Bug(
        "router retries a caller's 400",
        "client/blip_client/router.py",
        '        except InvalidRequestError:\n            self.metrics.errors.labels(name, "invalid_request").inc()\n'
        "            raise\n",
        "",
    ),
    Bug(
        "swrr subtracts its own weight",
        "client/blip_client/router.py",
        "chosen.current -= total",
        "chosen.current -= chosen.weight",
    ),
    Bug(
        "router tries one fleet more than max_attempts",
        "client/blip_client/router.py",
        "while len(tried) < self.config.max_attempts:",
        "while len(tried) <= self.config.max_attempts:",
    ),
    Bug(
        "router marks unhealthy one probe late",
        "client/blip_client/router_backend.py",
        "self.bad_probes >= self.policy.unhealthy_after",
        "self.bad_probes > self.policy.unhealthy_after",
    ),
    Bug(
        "the probe (supervisor, router, blip-client probe) fails on a 400",
        "client/blip_client/probe.py",
        "    if isinstance(error, InvalidRequestError):\n"
        '        return ProbeResult(True, seconds, now, note=f"the probe itself was refused ({one_line(error)})")\n',
        "",
    ),
    Bug(
        "supervisor reloads once more than its limit",
        "blip_serving/supervisor.py",
        "self._reloads >= self.reloads_per_restart",
        "self._reloads > self.reloads_per_restart",
    ),
    Bug(
        "make cost drops the spare instance",
        "blip_serving/capacity.py",
        "math.ceil(rate / found.fps) + 1",
        "math.ceil(rate / found.fps)",
    ),
    Bug(
        "manifest hashes only the first MiB",
        "blip_serving/manifest.py",
        '        for block in iter(lambda: handle.read(1 << 20), b""):\n            digest.update(block)\n',
        "        digest.update(handle.read(1 << 20))\n",
    ),
    Bug(
        "config generator writes INT64 as INT32",
        "blip_serving/model_config.py",
        "pb.DataType.Value(tensor.triton_dtype)",
        'pb.DataType.Value(tensor.triton_dtype.replace("INT64", "INT32"))',
    ),
    Bug(
        "JPEG walk skips junk between segments",
        "contract/blip_images/decode.py",
        "        if data[position] != 0xFF:\n",
        '        if data[position] != 0xFF and data.find(b"\\xff", position) == -1:\n',
    ),
    Bug(
        "pixel cap refuses the limit itself",
        "contract/blip_images/decode.py",
        "width * height > max_pixels",
        "width * height >= max_pixels",
    ),
    Bug(
        "byte cap refuses the limit itself",
        "contract/blip_images/decode.py",
        "size > max_bytes",
        "size >= max_bytes",
    ),
    Bug(
        "question count refuses the limit",
        "blip_serving/stub/questions.py",
        "values.size > max_questions",
        "values.size >= max_questions",
    ),
    Bug(
        "token limit refuses the largest bucket",
        "blip_serving/stub/questions.py",
        "if len(ids) > limit:",
        "if len(ids) >= limit:",
    ),
    Bug(
        "a score equal to the threshold does not alert",
        "contract/blip_contract/__init__.py",
        "return score >= threshold",
        "return score > threshold",
    ),
    Bug(
        "client sends scores_only on every request",
        "client/blip_client/wire.py",
        "return {SCORES_ONLY: True} if scores_only else None",
        "return {SCORES_ONLY: scores_only}",
    ),
)


# Not the lint tests: a planted edit may leave an unused import, and lint catching that says nothing of whether a
# test notices the behaviour.
NOT_LINT = ("--ignore", "tests/unit/test_makefile.py", "--ignore", "tests/unit/test_layers.py")


def run(bug: Bug, tests: str = "tests/unit") -> list[str]:
    """The unit tests that fail (or whose fixtures fail) with ``bug`` planted; empty when the suite passes."""
    path = ROOT / bug.path
    original = path.read_text()
    if original.count(bug.old) != 1:
        raise SystemExit(f"{bug.name}: the text to change is not in {bug.path} exactly once; update this script")
    try:
        path.write_text(original.replace(bug.old, bug.new))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                tests,
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                "--no-header",
                "-rfE",
                *NOT_LINT,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    if result.returncode == 0:
        return []
    return re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE) or [f"pytest exit {result.returncode}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="substrings of bug names to plant (default: all)")
    parser.add_argument("--tests", default="tests/unit", help="the tests to run against each (default: tests/unit)")
    args = parser.parse_args(argv)
    chosen = [b for b in BUGS if not args.names or any(n in b.name for n in args.names)]
    missed = 0
    for bug in chosen:
        failed = run(bug, args.tests)
        missed += not failed
        print(
            f"{'caught' if failed else 'MISSED'}: {bug.name}: {', '.join(failed) or 'every unit test passed'}",
            flush=True,
        )
    print(f"{len(chosen) - missed} of {len(chosen)} planted bugs caught by the unit suite")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
