"""Traffic: each request kind builds an httpx request and names the statuses its answer may have."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from blip_api.settings import DEFAULT_BEHAVIORS
from blip_bench.corpus import generated_images
from blip_bench.soak.config import EXTRA_IMAGES, MAX_IMAGE_BYTES
from blip_bench.stack import AUTH


@dataclass(frozen=True)
class Request:
    kind: str
    case: str
    expected: frozenset[int]
    method: str = "POST"
    path: str = "/v1/frames"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.expected == {200}


class Traffic:
    """Seeded request generator over the project's own corpus (and ../shared/images where it exists)."""

    WEIGHTS: ClassVar[dict[str, int]] = {
        "behaviors": 40,
        "questions": 15,
        "corpus_invalid": 10,
        "fuzzed_image": 10,
        "malformed": 12,
        "oversize": 4,
        "auth": 9,
    }
    QUESTIONS = ("what is the animal doing?", "Is the dog barking?", "what color is the cat?", "Is it dark?")
    BEHAVIORS = tuple(DEFAULT_BEHAVIORS)  # the names the API tier knows by default

    def __init__(self) -> None:
        corpus = generated_images()
        self.valid = [p.read_bytes() for p in sorted((corpus / "valid").iterdir())]
        self.invalid = [p.read_bytes() for p in sorted((corpus / "invalid").iterdir())]
        for kind, images in (("valid", self.valid), ("invalid", self.invalid)):
            extra = EXTRA_IMAGES / kind
            if extra.is_dir():
                images += [p.read_bytes() for p in sorted(extra.iterdir()) if p.stat().st_size <= MAX_IMAGE_BYTES]
        self.valid = [image for image in self.valid if len(image) <= MAX_IMAGE_BYTES]
        self.builders: dict[str, Callable[[random.Random], Request]] = {
            "behaviors": self.behaviors,
            "questions": self.questions,
            "corpus_invalid": self.corpus_invalid,
            "fuzzed_image": self.fuzzed_image,
            "malformed": self.malformed,
            "oversize": self.oversize,
            "auth": self.auth,
        }

    def next(self, rng: random.Random) -> Request:
        kind = rng.choices(list(self.WEIGHTS), weights=list(self.WEIGHTS.values()))[0]
        return self.builders[kind](rng)

    @staticmethod
    def raw(image: bytes, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        sent = AUTH if headers is None else headers
        return {"content": image, "params": params, "headers": sent | {"Content-Type": "image/jpeg"}}

    def behaviors(self, rng: random.Random) -> Request:
        asked = rng.sample(self.BEHAVIORS, rng.randint(1, 3))
        return Request(
            "behaviors",
            "raw body, behaviors",
            frozenset({200}),
            options=self.raw(rng.choice(self.valid), behavior=asked),
        )

    def questions(self, rng: random.Random) -> Request:
        fields = {"question": [rng.choice(self.QUESTIONS)], "behavior": [rng.choice(self.BEHAVIORS)]}
        files = {"image": ("frame.jpg", rng.choice(self.valid), "image/jpeg")}
        return Request(
            "questions",
            "multipart, free question",
            frozenset({200}),
            options={"files": files, "data": fields, "headers": AUTH},
        )

    def corpus_invalid(self, rng: random.Random) -> Request:
        return Request(
            "corpus_invalid",
            "corpus invalid image",
            frozenset({400}),
            options=self.raw(rng.choice(self.invalid), behavior="barking"),
        )

    def fuzzed_image(self, rng: random.Random) -> Request:
        """A valid frame cut, bit-flipped or spliced: it may still decode, so an answer or a 400 are both right."""
        data = bytearray(rng.choice(self.valid))
        how = rng.choice(("truncate", "flip", "splice"))
        if how == "truncate":
            del data[rng.randrange(1, len(data)) :]
        elif how == "flip":
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 256))
        return Request(
            "fuzzed_image", f"fuzzed ({how})", frozenset({200, 400}), options=self.raw(bytes(data), behavior="sleeping")
        )

    def malformed(self, rng: random.Random) -> Request:
        image = rng.choice(self.valid)
        cases = {
            "wrong content type": (415, {"content": image, "headers": AUTH | {"Content-Type": "text/plain"}}),
            "multipart without image": (
                400,
                {"files": {"other": ("x.txt", b"x", "text/plain")}, "data": {"behavior": "barking"}, "headers": AUTH},
            ),
            "broken multipart": (
                400,
                {
                    "content": b"--b\r\nnot a part",
                    "headers": AUTH | {"Content-Type": "multipart/form-data; boundary=b"},
                },
            ),
            "unknown behavior": (400, self.raw(image, behavior="howling")),
            "no question": (400, self.raw(image)),
            "blank question": (400, self.raw(image, question="   ")),
            "too many questions": (400, self.raw(image, question=["Is it?"] * 17)),
            "question too long": (400, self.raw(image, question="why " * 80)),
            "empty body": (400, self.raw(b"", behavior="barking")),
        }
        case = rng.choice(sorted(cases))
        status, options = cases[case]
        return Request("malformed", case, frozenset({status}), options=options)

    def oversize(self, rng: random.Random) -> Request:
        if rng.random() < 0.5:
            body = rng.randbytes(MAX_IMAGE_BYTES + 70 * 1024)
            return Request(
                "oversize", "body over the limit", frozenset({413}), options=self.raw(body, behavior="barking")
            )
        headers = AUTH | {f"X-Filler-{i}": "x" * 512 for i in range(40)}
        return Request(
            "oversize",
            "header block over the limit",
            frozenset({431}),
            options=self.raw(rng.choice(self.valid), headers=headers, behavior="barking"),
        )

    def auth(self, rng: random.Random) -> Request:
        image = rng.choice(self.valid)
        if rng.random() < 0.5:
            return Request(
                "auth", "missing token", frozenset({401}), options=self.raw(image, headers={}, behavior="barking")
            )
        wrong = {"Authorization": "Bearer not-the-token"}
        return Request(
            "auth", "wrong token", frozenset({401}), options=self.raw(image, headers=wrong, behavior="barking")
        )
