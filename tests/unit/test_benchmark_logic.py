"""The benchmarks' own logic: perf_analyzer's input JSON, the knee and the capacity for a rate."""

from __future__ import annotations

import base64

from blip_bench.perf import Point, capacity_for_rate, input_data, knee


def _elements(serialized: bytes) -> list[bytes]:
    out, position = [], 0
    while position < len(serialized):
        length = int.from_bytes(serialized[position : position + 4], "little")
        out.append(serialized[position + 4 : position + 4 + length])
        position += 4 + length
    return out


def test_bytes_inputs_carry_their_4_byte_length_prefixes() -> None:
    image, questions = b"\x89PNG fake image", ("Is the dog barking?", "¿Está ladrando?")
    first, second = input_data([image, b"second frame"], questions)["data"]
    for entry, frame in ((first, image), (second, b"second frame")):
        # Shapes without the batch dimension: perf_analyzer adds it (one frame a request).
        assert entry["IMAGE"]["shape"] == [1] and entry["QUESTIONS"]["shape"] == [2]
        assert _elements(base64.b64decode(entry["IMAGE"]["b64"])) == [frame]
        assert _elements(base64.b64decode(entry["QUESTIONS"]["b64"])) == [q.encode() for q in questions]


def _point(instances: int, concurrency: int, throughput: float, p99: float) -> Point:
    return Point(
        instances=instances,
        concurrency=concurrency,
        throughput=throughput,
        p50_ms=p99 / 2,
        p90_ms=p99 * 0.8,
        p95_ms=p99 * 0.9,
        p99_ms=p99,
    )


POINTS = [
    _point(1, 1, 0.8, 1500),
    _point(1, 2, 0.9, 2600),
    _point(2, 1, 0.7, 1700),
    _point(2, 2, 1.1, 1900),
    _point(2, 4, 1.2, 4000),
]


def test_the_knee_is_the_best_throughput_under_the_slo() -> None:
    assert knee(POINTS, 2000) == POINTS[3]
    assert knee(POINTS, 1600) == POINTS[0]
    assert knee(POINTS, 1000) is None


def test_the_knee_skips_unstable_points_while_a_stable_one_exists() -> None:
    noisy = _point(1, 2, 5.0, 1000).model_copy(update={"stable": False})
    assert knee([*POINTS, noisy], 2000) == POINTS[3], "an unstable point does not size a fleet"
    assert knee([noisy], 2000) == noisy, "with nothing stable, the unstable figures are all there is"


def test_capacity_uses_one_machine_when_it_can_else_counts_machines_at_the_knee() -> None:
    one = {"layout": "ensemble", "machines": 1}
    assert capacity_for_rate(POINTS, 2000, 0.8) == one | {"rate": 0.8, "instances": 1, "concurrency": 1}
    assert capacity_for_rate(POINTS, 2000, 1.0) == one | {"rate": 1.0, "instances": 2, "concurrency": 2}
    assert capacity_for_rate(POINTS, 2000, 5.0) == one | {"rate": 5.0, "instances": 2, "machines": 5, "concurrency": 2}
    assert "no point keeps p99 under 1000 ms" in capacity_for_rate(POINTS, 1000, 1.0)["answer"]
    colocated = [*POINTS, _point(1, 2, 1.05, 1200).model_copy(update={"layout": "colocated"})]
    assert capacity_for_rate(colocated, 2000, 1.0) == {
        "rate": 1.0,
        "layout": "colocated",
        "instances": 1,
        "machines": 1,
        "concurrency": 2,
    }


def test_the_precision_comparison_counts_answers_words_scores_and_flipped_alerts() -> None:
    from blip_bench.precision import compare

    reference = [
        {"answer": "yes", "score": 0.70},
        {"answer": "a dog on a couch", "score": 0.40},
        {"answer": "no", "score": 0.49},
    ]
    cast = [
        {"answer": "yes", "score": 0.69},
        {"answer": "a cat on a couch", "score": 0.41},
        {"answer": "no", "score": 0.51},
    ]
    assert compare(reference, cast) == {
        "answers": 3,
        "answers_equal": 2,
        "word_agreement": round(6 / 7, 5),
        "max_abs_score_delta": 0.02,
        "mean_abs_score_delta": round((0.01 + 0.01 + 0.02) / 3, 6),
        "alerts_flipped": 1,
    }
