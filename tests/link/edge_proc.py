"""An edge application run as a subprocess by the edge-restart test.

Sends BATCH index i as seq i + 1, resuming from the spool's next sequence number, then flushes.
Prints "START <index>" and "DONE". Usage: python edge_proc.py URL SPOOL_DIR COUNT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from linktest_support import BUNDLE, KEY, fast_config

from edge_runtime.link import EdgeLink
from edge_runtime.train.messages import Batch


def main() -> None:
    url, spool, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    link = EdgeLink.connect(
        url,
        key=KEY,
        bundle_sha256=BUNDLE,
        edge_id="edge0",
        run_id="edge-restart",
        spool_dir=spool,
        config=fast_config(spool_fsync=True),
    )
    start = link.next_seq - 1
    print("START", start, flush=True)
    x = np.ones((4, 64), np.float32)
    for i in range(start, count):
        assert link.send(Batch(0, i, np.arange(4), x, "fp32")) == i + 1
    link.flush(30)
    link.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
