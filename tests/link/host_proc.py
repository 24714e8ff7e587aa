"""A host application run as a subprocess by the restart test.

Records every batch as "seq index" lines (fsynced) before declaring it consumed; after a
restart its resume_for reads the last complete line back as the cursor. Prints READY.
Usage: python host_proc.py PORT RECORD_FILE
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from linktest_support import BUNDLE, KEY, fast_config

from edge_runtime.link import HostListener, HostSession, LinkClosed
from edge_runtime.train.messages import Batch


def main() -> None:
    port, record = int(sys.argv[1]), Path(sys.argv[2])

    def resume_for(edge_id: str, run_id: str) -> tuple[int, dict[str, Any]]:
        if not record.exists():
            return 0, {}
        lines = record.read_bytes().split(b"\n")
        complete = lines[:-1]  # whatever follows the last newline was cut by the kill
        record.write_bytes(b"".join(line + b"\n" for line in complete))
        if not complete:
            return 0, {}
        seq, index = map(int, complete[-1].split())
        return seq, {"last_index": index}

    out = open(record, "ab")  # noqa: SIM115 - held for the life of the process

    def on_session(session: HostSession) -> None:
        while True:
            try:
                msg = session.recv(0.5)
            except LinkClosed:
                return
            if isinstance(msg, Batch):
                out.write(f"{msg.seq} {msg.index}\n".encode())
                out.flush()
                os.fsync(out.fileno())
                session.consumed(msg.seq)
                time.sleep(0.003)  # a slow tail trainer: unconsumed batches pile up

    listener = HostListener(KEY, BUNDLE, resume_for=resume_for, config=fast_config())
    listener.serve_tcp("127.0.0.1", port, on_session)
    print("READY", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
