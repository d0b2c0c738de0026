"""``make demo``'s camera (``blip_serving.replay``): a real ``blip-api`` process in front of the session's Triton, on
a SQLite store in a temporary folder, its webhooks verified by the demo's own receiver."""

from __future__ import annotations

import re

from blip_bench.frames import SAMPLE
from blip_serving import replay


def test_the_demo_camera_gates_the_still_room_and_notifies_one_event_signed(triton, capsys) -> None:
    assert replay.run(triton.http_url, SAMPLE) == 0
    out = capsys.readouterr().out
    frames = re.search(r"(\d+) frames in [\d.]+ s: (\d+) inferred \((.*)\), (\d+) gated", out)
    assert frames, out
    posted, inferred, reasons, gated = int(frames[1]), int(frames[2]), frames[3], int(frames[4])
    assert posted == inferred + gated == 80
    assert gated >= posted * 0.5, f"a still room with one pet crossing: {gated} of {posted} gated"
    assert "first 1" in reasons and "changed" in reasons
    assert len(re.findall(r"^  event .* ended, ", out, re.MULTILINE)) == 1, out
    webhooks = re.findall(r"^  webhook (started|ended) for .*signature verified$", out, re.MULTILINE)
    assert sorted(webhooks) == ["ended", "started"], out
