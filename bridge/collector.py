"""Python's cyclic garbage collector, set for a process that streams rows.

The bridge allocates a few short-lived containers per row (decoded images, converted rows,
changes). Reference counting frees them, but with the default threshold the collector also
walks the young generation every 700 allocations, and the read-ahead queue keeps thousands of
changes alive long enough to be walked again and again: 13-15% of the bridge's CPU time on the
benchmark's wide rows. The long-running commands (run, demo, backfill, verify) call `tune()`:
everything loaded at start-up is moved out of the collector's way (`gc.freeze`) and the young
generation is collected every `YOUNG_THRESHOLD` allocations. Reference cycles are still
collected; the peak RSS of a benchmark run grew by about 3 MB.

Only the CLI calls this: library code leaves the process's collector alone.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
