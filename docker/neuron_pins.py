"""Print the exact pins of the Neuron release the fleet image installs, from its one matrix file.

``python3 neuron_pins.py neuron_release.toml pip`` -> ``torch==2.9.0 torch-neuronx==... neuronx-cc==...``;
``... apt`` -> ``aws-neuronx-runtime-lib=2.34.10.0-* ...`` (apt's version glob keeps the repository's revision).
Run inside the image build (Python 3.12 has tomllib), so the Dockerfile holds no version of its own.
"""

import sys
import tomllib


def pins(matrix: dict, kind: str) -> list[str]:
    if kind == "pip":
        return [f"{name}=={version}" for name, version in matrix["pip"].items() if name != "index"]
    if kind == "apt":
        return [f"{name}={version}-*" for name, version in matrix["apt"].items()]
    if kind == "index":
        return [matrix["pip"]["index"]]
    raise SystemExit(f"unknown kind {kind!r}: pip, apt or index")


if __name__ == "__main__":
    path, kind = sys.argv[1], sys.argv[2]
    with open(path, "rb") as handle:
        print(" ".join(pins(tomllib.load(handle), kind)))
