"""The prepared GPU check, dry run on this CPU machine: every phase runs on the cpu target so that the script is
known to work before a GPU is lent (the real run is `make gpu-check` there)."""

from __future__ import annotations

import json

from blip_bench import gpu_check


def test_gpu_check_dry_run_builds_compares_measures_serves_and_reports(tmp_path, capsys) -> None:
    out = tmp_path / "bench-gpu.json"
    code = gpu_check.main(["--dry-run", "--workspace", str(tmp_path / "ws"), "--out", str(out), "--seconds", "0.5"])
    assert code == 0, capsys.readouterr().out[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["target"] == "cpu"
    assert report["builds"]["random-tiny/fp32"]["max_relative_error"].keys() == {
        "image_encoder",
        "text_encoder",
        "text_decoder",
    }
    check = report["parity"]["random-tiny/fp32"]
    assert check["met"] and check["answers_equal"] == check["answers"] > 10, check
    (floor,) = report["floor"].values()
    assert [level["frame_batch"] for level in floor["levels"]] == [1, 2]
    assert all(
        level["fps"] > 0 and set(level["stage_ms"]) >= {"image_encoder", "text_decoder"} for level in floor["levels"]
    )
    served = report["served"]["random-tiny/fp32"]["device"]  # the first way tried serves: no fallback needed
    assert served["answers_equal_in_process"] == served["answers_checked"] > 0, served
    assert [level["concurrency"] for level in served["levels"]] == [1, 2]
    assert "floor random-tiny/fp32" in capsys.readouterr().out
