"""Threads per job: one for small training batches, torch's default for big ones, threads=N always wins."""

from cf_lightning.config.threads import SMALL_BATCH_ROWS, job_threads


def test_small_batches_get_one_thread_big_ones_torchs_default():
    assert job_threads(None, batch_size=64) == 1  # the chapter's recipe
    assert job_threads(None, batch_size=SMALL_BATCH_ROWS - 1) == 1
    assert job_threads(None, batch_size=65536) is None
    assert job_threads(None) is None  # nothing known about the batch: torch decides


def test_explicit_threads_and_parallel_launchers_win_over_the_batch_rule():
    assert job_threads(2, batch_size=64) == 2
    assert job_threads(3, {"n_jobs": 2}, batch_size=65536) == 3
    assert job_threads(None, {"n_jobs": -1}, batch_size=64) == 1
