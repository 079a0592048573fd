"""The automatic thread policy: one thread, the free cores for wide blocks, measured free cores,
and a fixed --threads that wins over it."""

import subprocess
import sys
import time

import torch

from resdyn import _threads
from resdyn._threads import CORES, PARALLEL_FROM, automatic, free_cores, threads_for
from resdyn.runs import RunContext
from resdyn.runs.context import using


def test_one_thread_except_for_wide_blocks_and_the_callers_threads_come_back():
    before = torch.get_num_threads()
    with automatic() as free:
        assert 1 <= free <= CORES
        assert torch.get_num_threads() == 1
        with threads_for(PARALLEL_FROM - 1):
            assert torch.get_num_threads() == 1
        with threads_for(PARALLEL_FROM):
            assert torch.get_num_threads() == free
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads_for(PARALLEL_FROM):  # outside a run: torch's own setting
        assert torch.get_num_threads() == before


def test_a_runs_fixed_threads_win_over_the_policy():
    before = torch.get_num_threads()
    with using(RunContext(threads=1)):
        with threads_for(10 * PARALLEL_FROM):
            assert torch.get_num_threads() == 1
    with using(RunContext()):  # threads=None: automatic
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_busy_neighbour_takes_a_core_away():
    free_cores()  # start a fresh window
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert free_cores() <= max(1, CORES - 1)
    finally:
        spin.kill()
        spin.wait()


def test_no_counters_means_one_thread(monkeypatch):
    monkeypatch.setattr(_threads, "_sample", lambda: None)
    assert free_cores() == 1
