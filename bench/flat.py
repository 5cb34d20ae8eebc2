"""Flat summary of a py-spy raw profile (``py-spy record -f raw``): top self and inclusive frames.

python -m bench.flat profile.raw [--top 30] [--filter aiortc]
"""

from __future__ import annotations

import argparse
import collections


def summarize(path: str, top: int = 30, contains: str = "") -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            self_c[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
    out = [f"samples: {total}", "-- self"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in self_c.most_common(top) if contains in f]
    out.append("-- inclusive")
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top * 2) if contains in f]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.flat")
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--filter", default="")
    a = ap.parse_args()
    print(summarize(a.path, a.top, a.filter))


if __name__ == "__main__":
    main()
