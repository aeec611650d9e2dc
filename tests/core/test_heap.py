"""dsa_core.heap: freed heap memory (holes between live blocks) is handed back to the OS."""

import sys

import pytest
import torch

from dsa_core.heap import release_free_heap


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_holes_left_by_freed_blocks_are_returned():
    """Blocks below glibc's mmap threshold come from the heap; freeing them between small live ones leaves
    resident holes (what a chunked attention's growing score blocks do), which only a trim returns."""
    blocks, keep = [], []
    for _ in range(600):
        blocks.append(torch.ones(16_000))  # 62.5 KiB each, from the heap, touched
        keep.append(torch.ones(64))  # a small live block after each: the holes cannot merge into the top
    blocks.clear()
    before = rss_mib()
    assert release_free_heap()
    after = rss_mib()
    assert before - after > 20, (before, after)  # ~37 MiB of holes; most pages return
    assert len(keep) == 600
