"""The collector settings the long-running commands use (bridge.collector)."""

from __future__ import annotations

import subprocess
import sys

from bridge import collector


def test_tune_raises_the_young_threshold_and_keeps_collecting_cycles() -> None:
    """After `tune()` the young generation is collected every YOUNG_THRESHOLD allocations,
    the older thresholds are kept, and a reference cycle is still freed."""
    code = (
        "import gc, weakref\n"
        "from bridge import collector\n"
        "before = gc.get_threshold()\n"
        "collector.tune()\n"
        "after = gc.get_threshold()\n"
        "assert after == (collector.YOUNG_THRESHOLD, before[1], before[2]), (before, after)\n"
        "assert gc.get_freeze_count() > 0\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "gone = weakref.ref(a); del a, b\n"
        "junk = [[] for _ in range(2 * collector.YOUNG_THRESHOLD)]\n"
        "assert gone() is None, 'the cycle was not collected'\n"
    )
    # its own interpreter: the test process's collector is left as it is
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
