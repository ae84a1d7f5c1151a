#!/usr/bin/python3
"""check_trace.py TRACE.json [REQUIRED_NAME ...] - checks a Chrome trace-event
file as Perfetto and chrome://tracing read it: valid JSON with a traceEvents
array; every event has name, ph, pid and tid; spans (ph X) have ts and a dur
of 0 or more, counters (ph C) a ts and numeric args; the spans of each track
nest (a span that starts inside another ends inside it); and every name given
on the command line appears. Prints what is wrong and exits 1, else 0."""
import json
import sys
from collections import defaultdict

EPS = 0.002  # microseconds: ts and dur are written with 3 decimals


def main():
    path, required = sys.argv[1], sys.argv[2:]
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    problems = []
    spans = defaultdict(list)
    names = set()
    for i, e in enumerate(events):
        for key in ("name", "ph", "pid", "tid"):
            if key not in e:
                problems.append(f"event {i} has no {key}: {e}")
        ph = e.get("ph")
        names.add(e.get("name"))
        if ph == "X":
            if not isinstance(e.get("ts"), (int, float)) or not isinstance(e.get("dur"), (int, float)):
                problems.append(f"span {i} lacks a numeric ts or dur: {e}")
            elif e["dur"] < 0:
                problems.append(f"span {i} has a negative dur: {e}")
            else:
                spans[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"], e["name"]))
        elif ph == "C":
            args = e.get("args", {})
            if not isinstance(e.get("ts"), (int, float)) or not args or \
                    not all(isinstance(v, (int, float)) for v in args.values()):
                problems.append(f"counter {i} lacks a ts or numeric args: {e}")
        elif ph != "M":
            problems.append(f"event {i} has phase {ph!r}, not X, C or M")
    for track, ss in spans.items():
        ss.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        stack = []
        for start, end, name in ss:
            while stack and start >= stack[-1][1] - EPS:
                stack.pop()
            if stack and end > stack[-1][1] + EPS:
                problems.append(f"track {track}: {name} [{start}, {end}] overlaps {stack[-1][2]} "
                                f"[{stack[-1][0]}, {stack[-1][1]}] without nesting")
                if len(problems) > 20:
                    break
            stack.append((start, end, name))
    for name in required:
        if name not in names:
            problems.append(f"no event named {name}")
    for p in problems[:20]:
        print(p)
    n_spans = sum(len(s) for s in spans.values())
    print(f"{path}: {len(events)} events, {n_spans} spans on {len(spans)} tracks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
