"""`make soak`: the API tier and two self-healing fleets on loopback under bounded, mixed traffic.

Fleet ``neuron`` runs the colocated layout and fleet ``gpu`` the ensemble (both on the cpu target here), behind
the API tier, as `make serve` and `make api` run them. Client workers (asyncio + httpx, seeded) send for
``--seconds``: valid frames (behaviors, free questions), bad images from the corpus, fuzzed images, malformed
requests, oversize bodies and header blocks, missing and wrong tokens. During the warm-up each fleet carries all
the traffic in turn (through the API tier's weights). At 35%, one Python stub of ``gpu`` is SIGKILLed (its
supervisor must heal it); at 60%, every process of fleet ``neuron`` is SIGKILLed and the fleet is started again
after a runtime's restart delay. RSS, open descriptors, threads and CPU time of every process are sampled
throughout.

It passes when no valid request failed, every bad request got its documented status, no process's RSS grew more
than 5% from the end of its warm-up to the end, and no descriptor or thread count kept growing. A JSON report, a
PNG (RSS, CPU, latency p50/p99, request rate, with the kills marked) and every response and sample as gzipped CSV
are written.
"""

from blip_bench.soak.config import HEAL_TARGET_S, SoakConfig
from blip_bench.soak.report import summary, write
from blip_bench.soak.run import Soak, configure_repository, main

__all__ = ["HEAL_TARGET_S", "Soak", "SoakConfig", "configure_repository", "main", "summary", "write"]
