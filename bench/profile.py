"""Summarise a py-spy raw profile (`python -m bench --profile` writes them).

    python -m bench.profile bench/results/<stamp>-crm_to_mes-wide-100.txt [--top 25] [--thread NAME]

Prints, per thread, the share of on-CPU samples spent *inside* each function (inclusive) and
*in* it (self). py-spy records only samples where the thread was running, so the shares are of
the thread's CPU time; waits on the servers do not appear.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('fn')} ({file})"


def load(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0]
        if thread.startswith("thread ("):
            thread = thread.split(": ", 1)[-1] if ": " in thread else thread
            frames = frames[1:]
        threads[thread].append(([_name(f) for f in frames], int(count)))
    return threads


def summarise(path: Path, top: int = 25, only: str | None = None) -> str:
    out = []
    threads = load(path)
    grand = sum(c for stacks in threads.values() for _, c in stacks)
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        if only and only not in thread:
            continue
        total = sum(c for _, c in stacks)
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for frames, c in stacks:
            for f in set(frames):
                inclusive[f] += c
            if frames:
                own[frames[-1]] += c
        out.append(f"== thread {thread}: {total} samples ({100 * total / max(grand, 1):.0f}% of all)")
        out.append("   inclusive%  self%  function")
        ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
        for f, c in ranked:
            out.append(f"   {100 * c / total:9.1f}  {100 * own[f] / total:5.1f}  {f}")
        out.append("   -- top self")
        for f, c in own.most_common(max(5, top // 2)):
            out.append(f"   {100 * inclusive[f] / total:9.1f}  {100 * c / total:5.1f}  {f}")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("path", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--thread", default=None, help="only threads whose name contains this")
    args = p.parse_args()
    print(summarise(args.path, args.top, args.thread))


if __name__ == "__main__":
    main()
