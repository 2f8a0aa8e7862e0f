"""Process pools for CPU-bound helpers (speech synthesis, PESQ/STOI) whose workers die with their parent.

fork, not spawn/forkserver: those re-run the caller's main script in every worker, which breaks any script
that calls the library at top level without an `if __name__ == "__main__"` guard (a user's script);
the workers never touch torch. Each worker asks Linux for SIGKILL when its parent dies: after a kill -9
of the parent, a pool's idle workers would otherwise linger, orphaned, for as long as the machine runs.
And each worker keeps numpy's BLAS to one thread: a pool already has a worker per core, and N workers x N
BLAS threads busy-waiting on each other made a two-worker PESQ/STOI pool no faster than one process.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

from threadpoolctl import threadpool_limits

_PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def _init_worker(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers then end when the pool shuts down, as usual
        pass
    # A parent killed between the fork and the prctl above sends no signal: the worker was already orphaned.
    if os.getppid() != parent:
        os._exit(1)
    threadpool_limits(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it cancels the pool


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """At most one worker per CPU: more only add fork and memory cost to CPU-bound work."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers > cpus:
        log.warning("%d workers asked for, %d CPUs here: using %d", workers, cpus, cpus)
        workers = cpus
    return ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool at once (Ctrl-C): drop the queued tasks and terminate the workers rather than wait for their
    current task; a shutdown that waits can hang on a worker the interrupt reached mid-start."""
    processes = list(getattr(pool, "_processes", {}).values())  # private, but the only handle on the workers
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(timeout=10)
