#include "kvzap-pool.h"

#include <algorithm>

bool kvzap_block_pool::init(int64_t capacity, int32_t block_size, size_t row_k, size_t row_v, int device,
                            std::string & err) {
    cap = capacity;
    bs  = block_size;
    rk  = row_k;
    rv  = row_v;
    dev = device;
    pending.clear();
    if (device < 0) {
        k = kvzap_vmem_cpu();
        v = kvzap_vmem_cpu();
    } else {
        k = kvzap_vmem_cuda(device, err);
        if (k) v = kvzap_vmem_cuda(device, err);
        if (!k || !v) return false;
    }
    if (!k->reserve((size_t)cap * bs * rk) || !v->reserve((size_t)cap * bs * rv)) {
        err = !k->err().empty() ? k->err() : v->err();
        return false;
    }
    reset();
    return true;
}

void kvzap_block_pool::reset() {
    pending.clear(); // every row is dropped
    n_used   = 0;
    hwm      = 0;
    frontier = 0;
    free_low = {};
    owner_list.clear();
    owner_idx.clear();
    owner_list.shrink_to_fit();
    owner_idx.shrink_to_fit();
    decommit_to(0);
}

bool kvzap_block_pool::commit_to(int64_t blocks) {
    if (!k->ensure_committed((size_t)blocks * bs * rk) || !v->ensure_committed((size_t)blocks * bs * rv)) {
        error = !k->err().empty() ? k->err() : v->err();
        return false;
    }
    return true;
}

void kvzap_block_pool::decommit_to(int64_t blocks) {
    flush(); // a recorded move may read a block above the mark
    k->decommit_above((size_t)blocks * bs * rk);
    v->decommit_above((size_t)blocks * bs * rv);
}

int32_t kvzap_block_pool::alloc(int32_t list, int32_t idx) {
    if (n_used >= cap) return -1;
    int32_t b;
    if (!free_low.empty()) {
        b = free_low.top();
        free_low.pop();
    } else {
        if (!commit_to(frontier + 1)) return -1;
        b = (int32_t)frontier++;
        owner_list.push_back(-1);
        owner_idx.push_back(-1);
    }
    owner_list[b] = list;
    owner_idx[b]  = idx;
    n_used++;
    hwm = std::max<int64_t>(hwm, b + 1);
    return b;
}

void kvzap_block_pool::release(int32_t b) {
    owner_list[b] = -1;
    owner_idx[b]  = -1;
    free_low.push(b);
    n_used--;
    while (hwm > 0 && owner_list[hwm - 1] < 0) hwm--;
}

int64_t kvzap_block_pool::compact(const std::function<void(int32_t list, int32_t idx, int32_t dst)> & on_move) {
    // Holes are refilled first by new blocks (lowest first); moving is for what stays open: more than a quarter of a
    // chunk (the pages they keep resident) or 1/64 of use, so that a move of a few blocks is not made every ubatch.
    const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t)(KVZAP_VMEM_CHUNK / ((size_t)bs * std::max(rk, rv))));
    int64_t moved              = 0;
    if (hwm - n_used > std::max(n_used / 64, chunk_blocks / 4)) {
        while (!free_low.empty() && free_low.top() < hwm - 1) {
            const int32_t dst = free_low.top();
            free_low.pop();
            const int32_t src = (int32_t)hwm - 1;
            copy_rows((int64_t)dst * bs, (int64_t)src * bs, bs);
            owner_list[dst] = owner_list[src];
            owner_idx[dst]  = owner_idx[src];
            on_move(owner_list[dst], owner_idx[dst], dst);
            owner_list[src] = -1;
            owner_idx[src]  = -1;
            free_low.push(src);
            while (hwm > 0 && owner_list[hwm - 1] < 0) hwm--;
            moved++;
        }
    }
    // Give back the tail: ids at or above the mark become fresh again, so the bookkeeping shrinks with it.
    if (frontier > hwm) {
        std::vector<int32_t> keep;
        while (!free_low.empty()) {
            if (free_low.top() < hwm) keep.push_back(free_low.top());
            free_low.pop();
        }
        for (int32_t b : keep) free_low.push(b);
        frontier = hwm;
        owner_list.resize(frontier);
        owner_idx.resize(frontier);
    }
    decommit_to(hwm);
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
