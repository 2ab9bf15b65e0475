"""Decode attention through torch's scaled_dot_product_attention on a dense f16 cache of the same shape and bytes as
scripts/gpu/kvzap-attn-check.cpp times (32 query heads, 8 KV heads, head dim 128, one query token): the bandwidth our
kernel is measured against. Each backend that accepts the call is timed (CUDA events, median of 50 after 10 warm-ups,
several caches in turn when one fits in L2). Prints a table; JSON lines to $KVZAP_TIMINGS if set.
  python3 scripts/gpu/kvzap-attn-sdpa.py"""
import json
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV, D = 32, 8, 128
out = open(os.environ["KVZAP_TIMINGS"], "a") if os.environ.get("KVZAP_TIMINGS") else None
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
# 34816 and 69632 keys: the bytes that q8_0 rows (272 bytes a key and KV head, against f16's 512) take at 64k and 128k
for L in (16384, 34816, 65536, 69632, 131072):
    kv_bytes = 2 * HKV * L * D * 2
    sets = max(1, (512 << 20) // kv_bytes)
    q = torch.randn(1, HQ, 1, D, device="cuda", dtype=torch.float16)
    ks = [torch.randn(1, HKV, L, D, device="cuda", dtype=torch.float16) for _ in range(sets)]
    vs = [torch.randn(1, HKV, L, D, device="cuda", dtype=torch.float16) for _ in range(sets)]
    for name, backend in (("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        def call(i):
            return F.scaled_dot_product_attention(q, ks[i % sets], vs[i % sets], enable_gqa=True)
        try:
            if backend is None:
                call(0)
            else:
                with sdpa_kernel(backend):
                    call(0)
        except Exception as e:  # a backend that refuses this shape
            print(f"sdpa {name:9s} L={L:6d}: not available ({str(e).splitlines()[0][:80]})")
            continue
        times = []
        ctx = sdpa_kernel(backend) if backend is not None else None
        if ctx:
            ctx.__enter__()
        for i in range(60):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            call(i)
            e1.record()
            e1.synchronize()
            if i >= 10:
                times.append(e0.elapsed_time(e1))
        if ctx:
            ctx.__exit__(None, None, None)
        t = sorted(times)[len(times) // 2]
        gbs = kv_bytes / (t * 1e-3) / 1e9
        print(f"sdpa {name:9s} L={L:6d}  KV {kv_bytes / 1e6:7.1f} MB  {t * 1e3:8.1f} us  {gbs:7.1f} GB/s")
        if out:
            out.write(json.dumps({"kernel": "sdpa-" + name, "type": "f16", "keys": L, "kv_bytes": kv_bytes, "us": round(t * 1e3, 2),
                                  "gbs": round(gbs, 1)}) + "\n")
    del ks, vs
    torch.cuda.empty_cache()
