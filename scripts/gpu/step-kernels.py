"""Sums an ncu CSV (gpu__time_duration.sum per launch, from step-profile.sh) per kernel and per decode step.

The window of launches holds a few whole decode steps and parts of two more; the steps it spans are counted by the
attention kernel, launched once per layer and step (stock: flash_attn_ext*, kvzap: kvzap_attn* decode kernels), so
every figure is per step: launches, µs, and the kernel time of the whole step.
    python3 scripts/gpu/step-kernels.py NCU.csv LABEL [N_LAYER]
"""
import csv
import re
import sys
from collections import defaultdict

path, label = sys.argv[1], sys.argv[2]
n_layer = int(sys.argv[3]) if len(sys.argv) > 3 else 32
with open(path, newline="") as f:
    lines = [l for l in f if l.startswith('"')]  # ncu's own notes are not CSV
rows = list(csv.DictReader(lines))
time = defaultdict(float)
count = defaultdict(int)
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = re.sub(r"^void ", "", re.sub(r"\(.*", "", name)).strip()
    time[name] += float(r["Metric Value"].replace(",", ""))  # ns
    count[name] += 1
attn = [k for k in count if k.startswith("flash_attn") and "combine" not in k and "fixup" not in k] or [
    k for k in count if k.startswith("kvzap_attn") and "merge" not in k
]
launches_attn = sum(count[k] for k in attn)
steps = launches_attn / n_layer if launches_attn else 0
if steps == 0:
    print(f"{label}: no attention kernel in the window ({len(rows)} rows)")
    sys.exit(0)
total = sum(time.values())
print(f"{label}: {len(rows)} launches in the window = {steps:.2f} steps; kernel time {total / steps / 1000:.1f} µs per step, "
      f"{sum(count.values()) / steps:.0f} launches per step")
for k in sorted(time, key=lambda k: -time[k])[:24]:
    print(f"  {count[k] / steps:6.1f}/step {time[k] / steps / 1000:8.1f} µs/step {time[k] / count[k] / 1000:7.2f} µs each  {k[:110]}")
