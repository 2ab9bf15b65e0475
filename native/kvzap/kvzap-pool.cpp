#include "kvzap-pool.h"

#include <algorithm>
#include <numeric>

bool kvzap_block_pool::init(int64_t capacity, int32_t n_regions, int64_t region_cap, int32_t block_size, size_t row_k,
                            size_t row_v, int device, std::string & err) {
    cap = capacity;
    bs  = block_size;
    rk  = row_k;
    rv  = row_v;
    dev = device;
    pending.clear();
    regions.clear();
    // regions start on whole chunks of both ranges: the stride is a multiple of the blocks a chunk holds
    const size_t ck     = KVZAP_VMEM_CHUNK / std::gcd(KVZAP_VMEM_CHUNK, (size_t)bs * rk);
    const size_t cv     = KVZAP_VMEM_CHUNK / std::gcd(KVZAP_VMEM_CHUNK, (size_t)bs * rv);
    const int64_t align = (int64_t)std::lcm(ck, cv);
    stride              = (std::max<int64_t>(1, region_cap) + align - 1) / align * align;
    if ((int64_t)n_regions * stride > INT32_MAX) {
        err = "the KV pool needs more block ids than 32 bits hold";
        return false;
    }
    if (device < 0) {
        k = kvzap_vmem_cpu();
        v = kvzap_vmem_cpu();
    } else {
        k = kvzap_vmem_cuda(device, err);
        if (k) v = kvzap_vmem_cuda(device, err);
        if (!k || !v) return false;
    }
    const size_t kb = (size_t)stride * bs * rk, vb = (size_t)stride * bs * rv;
    // one chunk more than the regions, never committed: room for a backend that pads a tensor's allocation past its
    // bytes (ggml's CUDA buffers pad quantized rows to a multiple of 512 values)
    if (!k->reserve(kb * n_regions + KVZAP_VMEM_CHUNK) || !v->reserve(vb * n_regions + KVZAP_VMEM_CHUNK)) {
        err = !k->err().empty() ? k->err() : v->err();
        return false;
    }
    regions.resize(n_regions);
    for (int32_t i = 0; i < n_regions; i++) {
        regions[i].k = k->part(kb * i, kb);
        regions[i].v = v->part(vb * i, vb);
        if (!regions[i].k || !regions[i].v) {
            err = !k->err().empty() ? k->err() : v->err();
            return false;
        }
    }
    reset();
    return true;
}

int64_t kvzap_block_pool::high_water() const {
    int64_t h = 0;
    for (const auto & r : regions) h += r.hwm;
    return h;
}

size_t kvzap_block_pool::committed_bytes() const {
    size_t c = 0;
    for (const auto & r : regions) c += r.k->committed_bytes() + r.v->committed_bytes();
    return c;
}

void kvzap_block_pool::reset() {
    pending.clear(); // every row is dropped
    n_used = 0;
    for (auto & r : regions) {
        r.used     = 0;
        r.hwm      = 0;
        r.frontier = 0;
        r.free_low = {};
        r.owner_list.clear();
        r.owner_idx.clear();
        r.owner_list.shrink_to_fit();
        r.owner_idx.shrink_to_fit();
        decommit_to(r, 0);
    }
}

bool kvzap_block_pool::commit_to(region & r, int64_t blocks) {
    if (!r.k->ensure_committed((size_t)blocks * bs * rk) || !r.v->ensure_committed((size_t)blocks * bs * rv)) {
        error = !r.k->err().empty() ? r.k->err() : r.v->err();
        return false;
    }
    return true;
}

void kvzap_block_pool::decommit_to(region & r, int64_t blocks) {
    flush(); // a recorded move may read a block above the mark
    r.k->decommit_above((size_t)blocks * bs * rk);
    r.v->decommit_above((size_t)blocks * bs * rv);
}

void kvzap_block_pool::lower_hwm(region & r) {
    while (r.hwm > 0 && r.owner_list[r.hwm - 1] < 0) r.hwm--;
}

int32_t kvzap_block_pool::alloc(int32_t ri, int32_t list, int32_t idx) {
    if (n_used >= cap || ri < 0 || ri >= (int32_t)regions.size()) return -1;
    region & r = regions[ri];
    int32_t b;
    if (!r.free_low.empty()) {
        b = r.free_low.top();
        r.free_low.pop();
    } else {
        if (r.frontier >= stride || !commit_to(r, r.frontier + 1)) return -1;
        b = (int32_t)r.frontier++;
        r.owner_list.push_back(-1);
        r.owner_idx.push_back(-1);
    }
    r.owner_list[b] = list;
    r.owner_idx[b]  = idx;
    n_used++;
    r.used++;
    r.hwm = std::max<int64_t>(r.hwm, b + 1);
    return (int32_t)(ri * stride + b);
}

void kvzap_block_pool::release(int32_t g) {
    region & r      = regions[g / stride];
    const int32_t b = (int32_t)(g % stride);
    r.owner_list[b] = -1;
    r.owner_idx[b]  = -1;
    r.free_low.push(b);
    n_used--;
    r.used--;
    lower_hwm(r);
}

int64_t kvzap_block_pool::compact(const std::function<void(int32_t list, int32_t idx, int32_t dst)> & on_move) {
    // Holes are refilled first by new blocks (lowest first); moving is for what stays open: more than a quarter of a
    // chunk (the pages they keep resident) or 1/64 of use, so that a move of a few blocks is not made every ubatch.
    const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t)(KVZAP_VMEM_CHUNK / ((size_t)bs * std::max(rk, rv))));
    int64_t moved              = 0;
    for (size_t ri = 0; ri < regions.size(); ri++) {
        region & r = regions[ri];
        if (r.hwm - r.used > std::max(r.used / 64, chunk_blocks / 4)) {
            const int64_t base = (int64_t)ri * stride;
            while (!r.free_low.empty() && r.free_low.top() < r.hwm - 1) {
                const int32_t dst = r.free_low.top();
                r.free_low.pop();
                const int32_t src = (int32_t)r.hwm - 1;
                copy_rows((base + dst) * bs, (base + src) * bs, bs);
                r.owner_list[dst] = r.owner_list[src];
                r.owner_idx[dst]  = r.owner_idx[src];
                on_move(r.owner_list[dst], r.owner_idx[dst], (int32_t)(base + dst));
                r.owner_list[src] = -1;
                r.owner_idx[src]  = -1;
                r.free_low.push(src);
                lower_hwm(r);
                moved++;
            }
        }
        // Give back the tail: ids at or above the mark become fresh again, so the bookkeeping shrinks with it.
        if (r.frontier > r.hwm) {
            std::vector<int32_t> keep;
            while (!r.free_low.empty()) {
                if (r.free_low.top() < r.hwm) keep.push_back(r.free_low.top());
                r.free_low.pop();
            }
            for (int32_t b : keep) r.free_low.push(b);
            r.frontier = r.hwm;
            r.owner_list.resize(r.frontier);
            r.owner_idx.resize(r.frontier);
        }
    }
    for (auto & r : regions) decommit_to(r, r.hwm);
    return moved;
}

void kvzap_block_pool::copy_rows(int64_t dst, int64_t src, int64_t n) {
    if (dev >= 0) {
        for (int64_t i = 0; i < n && dst != src; i++) {
            pending.push_back(src + i);
            pending.push_back(dst + i);
        }
        return;
    }
    k->copy((size_t)dst * rk, (size_t)src * rk, (size_t)n * rk);
    v->copy((size_t)dst * rv, (size_t)src * rv, (size_t)n * rv);
}

bool kvzap_block_pool::flush() {
    if (pending.empty()) return true;
    std::string err;
    const bool ok = kvzap_vmem_cuda_moves(dev, *k, *v, rk, rv, pending.data(), pending.size() / 2, err);
    pending.clear();
    if (!ok) error = err;
    return ok;
}
