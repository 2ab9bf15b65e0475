#!/usr/bin/env python3
"""Where the time of a traced run goes (cupti-trace.cpp's CSV), phase by phase.

decode-steps.mjs (KVZAP_PHASE_MARKS=MARKS) writes each phase's wall-clock span; the trace's clock line places them on
CUPTI's clock. For the prefill (per ubatch) and the timed decode (per step): the wall time, the time the GPU is busy
(the union of kernels, memcpys and memsets), the kernels summed by name, and the API calls summed by name, each with
the part of it during which the GPU was idle (what the GPU waits on).

  python3 scripts/gpu/trace-steps.py TRACE.csv MARKS.jsonl LABEL
"""
import bisect
import json
import sys
from collections import defaultdict


def load(path):
    gpu, api, offset = [], [], 0
    with open(path) as f:
        for line in f:
            kind, start, end, a, b, name = line.rstrip("\n").split(",", 5)
            start, end = int(start), int(end)
            if kind == "T":  # CUPTI's clock at start, the wall clock at end
                offset = end - start
            elif kind in "KMS":
                label = name if kind == "K" else ("memcpy kind %s" % b if kind == "M" else "memset")
                gpu.append((start, end, label, int(name) if kind != "K" else 0))
            else:
                api.append((start, end, name))
    gpu.sort()
    api.sort()
    return gpu, api, offset


def union(intervals):
    merged = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def idle_overlap(s, e, busy, starts):
    """The part of [s, e) during which no GPU interval of busy (merged, sorted; starts: their starts) runs."""
    total = e - s
    i = max(0, bisect.bisect_right(starts, s) - 1)
    while i < len(busy) and busy[i][0] < e:
        a, b = max(s, busy[i][0]), min(e, busy[i][1])
        if b > a:
            total -= b - a
        i += 1
    return total


def short(name, n=70):
    name = name.split("(")[0]
    return name if len(name) <= n else name[: n - 3] + "..."


def report(label, name, lo, hi, gpu, api, per, unit):
    g = [x for x in gpu if lo <= x[0] <= hi]
    a = [x for x in api if lo <= x[0] <= hi]
    busy = union([(s, e) for s, e, *_ in g])
    starts = [s for s, _ in busy]
    busy_ns = sum(e - s for s, e in busy)
    wall = hi - lo
    print(
        f"{label} {name}: wall {wall / 1e6 / per:.3f} ms/{unit}, GPU busy {busy_ns / 1e6 / per:.3f}, GPU idle "
        f"{(wall - busy_ns) / 1e6 / per:.3f} ({per} {unit}s)"
    )
    kern = defaultdict(lambda: [0, 0])
    for s, e, n, _ in g:
        kern[n][0] += 1
        kern[n][1] += e - s
    for n, (c, t) in sorted(kern.items(), key=lambda kv: -kv[1][1])[:14]:
        print(f"{label}   gpu {t / 1e3 / per:9.1f} us/{unit} {c / per:7.1f}x  {short(n)}")
    calls = defaultdict(lambda: [0, 0, 0])
    for s, e, n in a:
        c = calls[n]
        c[0] += 1
        c[1] += e - s
        c[2] += idle_overlap(s, e, busy, starts)
    in_api = sum(idle_overlap(s, e, busy, starts) for s, e in union([(s, e) for s, e, _ in a]))
    print(
        f"{label}   GPU idle under an API call {in_api / 1e3 / per:.1f} us/{unit}, under none (host code) "
        f"{(wall - busy_ns - in_api) / 1e3 / per:.1f} us/{unit}"
    )
    for n, (c, t, idle) in sorted(calls.items(), key=lambda kv: -kv[1][2])[:12]:
        print(
            f"{label}   api {t / 1e3 / per:9.1f} us/{unit} {c / per:7.1f}x  of it with the GPU idle "
            f"{idle / 1e3 / per:8.1f} us  {n}"
        )


def main():
    path, marks, label = sys.argv[1], sys.argv[2], sys.argv[3]
    gpu, api, offset = load(path)
    if not offset:
        print(f"{label}: the trace has no clock line")
        return
    with open(marks) as f:
        spans = {m["phase"]: m for m in map(json.loads, f)}
    for name, unit in (("prefill", "ubatch"), ("decode", "step")):
        m = spans.get(name)
        if not m:
            print(f"{label}: no {name} mark")
            continue
        report(label, name, m["t0"] - offset, m["t1"] - offset, gpu, api, m["count"], unit)


if __name__ == "__main__":
    main()
