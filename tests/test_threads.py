"""The automatic thread policy: one thread, the free cores for wide blocks, measured free cores,
and a fixed --threads that wins over it."""

import os
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
    with automatic():
        assert torch.get_num_threads() == 1
        with threads_for(PARALLEL_FROM - 1):
            assert torch.get_num_threads() == 1
        time.sleep(0.2)  # a window to measure the free cores by
        with threads_for(PARALLEL_FROM):
            assert 1 <= torch.get_num_threads() <= CORES
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
    free_cores()  # the meter runs from here on
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)  # the meter's window (the last second) sees only the neighbour
        assert free_cores() <= max(1, CORES - 1)
    finally:
        spin.kill()
        spin.wait()


def test_no_counters_means_one_thread(monkeypatch):
    monkeypatch.setattr(_threads, "_sample", lambda: None)
    assert free_cores() == 1


def test_free_cores_are_the_cores_less_what_the_others_used_over_the_last_second(monkeypatch):
    monkeypatch.setattr(_threads, "CORES", 4)
    meter = _threads._Meter()
    meter._owner = os.getpid()  # no sampling thread: the samples are given
    meter._samples.extend([(90.0, 5.0, 8.0), (100.0, 10.0, 9.5), (100.5, 10.2, 9.8)])
    # over the last second (t 9.5 -> 10.5): the machine 2.6 busy core-seconds, this process 1.0
    monkeypatch.setattr(_threads, "_sample", lambda: (102.6, 11.0, 10.5))
    assert meter.free() == 2  # 4 cores - 1.6 busy elsewhere, rounded
    monkeypatch.setattr(_threads, "_sample", lambda: (104.2, 11.0, 10.5))  # others: 3.2
    assert meter.free() == 1
    monkeypatch.setattr(_threads, "_sample", lambda: (101.0, 11.0, 10.5))  # others idle
    assert meter.free() == 4
    # a window too short to tell: the threads running right now (/proc/loadavg's 4th field)
    meter._samples.clear()
    meter._samples.append((101.0, 11.0, 10.49))
    monkeypatch.setattr(_threads, "_running_now", lambda: 3)
    assert meter.free() == 3
