"""blip_bench.events, the parts that run without a server: the event layer's in-process figures."""

from __future__ import annotations

from blip_bench.events import api_defaults, in_process_section
from blip_bench.stack import write_api_config


def test_the_in_process_rounds_gate_every_still_frame_and_infer_every_flipped_one(tmp_path) -> None:
    """Its figures are CPU time, not asserted; what is: each kind's frames were the kind it reports, through the
    defaults of the API config the cost section measures, and each figure spans its rounds."""
    config = write_api_config(tmp_path / "api.toml", {"fleet": "127.0.0.1:9"})
    (row,) = in_process_section(api_defaults(config), [(320, 180)], frames=12, rounds=2)
    assert (row["size"], row["frames"], row["rounds"]) == ("320x180", 12, 2)
    assert row["gated_share"] == 1.0 and row["inferred_share"] == 1.0
    for name in ("gated_cpu_ms", "inferred_cpu_ms"):
        spread = row[name]
        assert 0 <= spread["min"] <= spread["median"] <= spread["max"], (name, spread)
