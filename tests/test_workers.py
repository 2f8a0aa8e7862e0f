from threadpoolctl import threadpool_info, threadpool_limits

from staa.workers import worker_pool


def _blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def test_pool_workers_keep_blas_to_one_thread():
    with threadpool_limits(2, user_api="blas"):  # the parent may use several; its workers must not inherit that
        with worker_pool(2) as pool:
            seen = list(pool.map(_blas_threads_of, range(4)))
    assert seen and all(threads == [1] for threads in seen), seen


def _blas_threads_of(_):
    return _blas_threads()
