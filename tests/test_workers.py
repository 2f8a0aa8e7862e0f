from threadpoolctl import threadpool_info, threadpool_limits

from staa.io.workers import worker_pool


def _blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def test_pool_workers_keep_blas_to_one_thread():
    with threadpool_limits(2, user_api="blas"):  # the parent may use several; its workers must not inherit that
        with worker_pool(2) as pool:
            seen = list(pool.map(_blas_threads_of, range(4)))
    assert seen and all(threads == [1] for threads in seen), seen


def _blas_threads_of(_):
    return _blas_threads()


def test_a_worker_whose_parent_died_before_it_asked_for_sigkill_exits():
    # The parent pid it was forked from is gone (here: a pid that is not its parent), so no death signal
    # will ever come; the worker must end itself instead of living on as an orphan.
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from staa.io.workers import _init_worker; _init_worker(os.getppid() + 1); print('alive')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "alive" not in done.stdout
    kept = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from staa.io.workers import _init_worker; _init_worker(os.getppid()); print('alive')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kept.returncode == 0 and "alive" in kept.stdout
