"""`elastic-trainer rendezvous --port P`: the job's standalone rendezvous server (a TCPStore; no worker hosts it).

Every launcher's torchrun joins it with ``--rdzv-backend=c10d --rdzv-conf=is_host=false``, so no worker's death
takes the store with it, and each generation uses its own ``--rdzv-id`` (its own key prefix). torchrun's default
TCP-store sharing (TORCH_DISABLE_SHARE_RDZV_TCP_STORE unset) stays on: each agent runs exactly one rendezvous
round, so the first-round-only bootstrap bug behind the baseline's join hang cannot occur; the workers' store of a
generation is then served by that generation's rank-0 agent, which dies with the generation anyway.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType

log = logging.getLogger("elastic_trainer.rendezvous")


def serve(
    port: int, host: str = "0.0.0.0", ready: threading.Event | None = None, stop: threading.Event | None = None
) -> int:
    """Run a TCPStore server until SIGTERM/SIGINT (or ``stop`` is set). Returns the bound port."""
    from torch.distributed import TCPStore  # type: ignore[attr-defined]

    store = TCPStore(host, port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    bound = int(store.port)
    log.info("rendezvous store listening on %s:%d", host, bound)
    print(f"rendezvous store listening on {host}:{bound}", flush=True)
    done = stop or threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    if ready is not None:
        ready.set()
    while not done.wait(3600):
        pass
    del store  # the server lives as long as the object
    return bound
