"""``python -m blip_bench.soak``: see the package's docstring."""

import sys

from blip_bench.soak.run import main

sys.exit(main())
