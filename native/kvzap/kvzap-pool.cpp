#include "kvzap-pool.h"

#include <algorithm>
#include <cstring>
#include <numeric>

bool kvzap_block_pool::init(int64_t capacity, int32_t n_regions, int64_t region_cap, int32_t block_size, size_t row_k,
                            size_t row_v, int device, std::string & err) {
    cap = capacity;
    bs  = block_size;
    rk  = row_k;
    rv  = row_v;
    dev = device;
    moves.clear();
    regions.clear();
    // regions start on whole chunks of both ranges: the stride is a multiple of the blocks a chunk holds
    const size_t ck     = KVZAP_VMEM_CHUNK / std::gcd(KVZAP_VMEM_CHUNK, (size_t)bs * rk);
    const size_t cv     = KVZAP_VMEM_CHUNK / std::gcd(KVZAP_VMEM_CHUNK, (size_t)bs * rv);
    const int64_t align = (int64_t)std::lcm(ck, cv);
    stride              = (std::max<int64_t>(1, region_cap) + align - 1) / align * align;
    // the layers' regions and the spill (shared by them: there is nothing to share with one region)
    n_home                = n_regions;
    spill                 = n_regions >= 2 ? n_regions : -1;
    const int32_t n_parts = n_regions + (spill >= 0 ? 1 : 0);
    // The spill holds what the regions have not yet gathered into whole chunks: up to about a chunk's worth of blocks
    // each, and what they gain between two compactions; past that, a region commits a chunk of its own.
    const int64_t chunk_blocks = (int64_t)(chunk_bytes() / ((size_t)bs * std::min(rk, rv))) + 1;
    const int64_t spill_size =
        spill >= 0 ? std::max(stride, (2 * n_regions * chunk_blocks + align - 1) / align * align) : 0;
    if ((int64_t)n_regions * stride + spill_size > INT32_MAX) {
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
    const size_t sk = (size_t)spill_size * bs * rk, sv = (size_t)spill_size * bs * rv;
    // one chunk more than the regions, never committed: room for a backend that pads a tensor's allocation past its
    // bytes (ggml's CUDA buffers pad quantized rows to a multiple of 512 values)
    if (!k->reserve(kb * n_regions + sk + KVZAP_VMEM_CHUNK) || !v->reserve(vb * n_regions + sv + KVZAP_VMEM_CHUNK)) {
        err = !k->err().empty() ? k->err() : v->err();
        return false;
    }
    regions.resize(n_parts);
    for (int32_t i = 0; i < n_parts; i++) {
        regions[i].size = i == spill ? spill_size : stride;
        regions[i].k    = k->part(kb * i, i == spill ? sk : kb);
        regions[i].v    = v->part(vb * i, i == spill ? sv : vb);
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
    moves.clear(); // every row is dropped
    n_used = 0;
    for (auto & r : regions) {
        r.used     = 0;
        r.hwm      = 0;
        r.frontier = 0;
        r.free_low = {};
        r.owner_list.clear();
        r.owner_idx.clear();
        r.home.clear();
        r.owner_list.shrink_to_fit();
        r.owner_idx.shrink_to_fit();
        r.home.shrink_to_fit();
        r.spilled = 0;
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

int64_t kvzap_block_pool::blocks_per_chunk() const {
    return std::max<int64_t>(1, (int64_t)(chunk_bytes() / ((size_t)bs * std::max(rk, rv))));
}

int64_t kvzap_block_pool::committed_blocks(const region & r) const {
    const int64_t kb = (int64_t)(r.k->committed_bytes() / ((size_t)bs * rk));
    const int64_t vb = (int64_t)(r.v->committed_bytes() / ((size_t)bs * rv));
    return std::min({ kb, vb, r.size });
}

int32_t kvzap_block_pool::take(region & r, bool grow) {
    if (!r.free_low.empty()) {
        const int32_t b = r.free_low.top();
        r.free_low.pop();
        return b;
    }
    if (r.frontier >= r.size) return -1;
    if (r.frontier >= committed_blocks(r) && (!grow || !commit_to(r, r.frontier + 1))) return -1;
    r.owner_list.push_back(-1);
    r.owner_idx.push_back(-1);
    if (spill >= 0 && &r == &regions[spill]) r.home.push_back(-1);
    return (int32_t)r.frontier++;
}

int32_t kvzap_block_pool::alloc(int32_t ri, int32_t list, int32_t idx) {
    if (n_used >= cap || ri < 0 || ri >= n_home) return -1;
    region & r = regions[ri];
    int32_t at = ri;
    int32_t b  = take(r, false);
    // one token at a time: past the region's committed blocks, the spill first; a batch (bulk): the region grows
    // (its last chunk goes to the spill once the batch is done: spill_tails)
    for (int pass = 0; pass < 2 && b < 0; pass++) {
        if ((pass == 0) != bulk && spill >= 0) {
            b  = take(regions[spill], true);
            at = b >= 0 ? spill : ri;
        } else {
            b = take(r, true);
        }
    }
    if (b < 0) return -1;
    region & u      = regions[at];
    u.owner_list[b] = list;
    u.owner_idx[b]  = idx;
    if (at == spill) {
        u.home[b] = ri;
        r.spilled++;
    }
    n_used++;
    u.used++;
    u.hwm = std::max<int64_t>(u.hwm, b + 1);
    return (int32_t)(at * stride + b);
}

void kvzap_block_pool::release(int32_t g) {
    const int32_t ri = (int32_t)std::min<int64_t>(g / stride, (int64_t)regions.size() - 1);
    region & r       = regions[ri];
    const int32_t b  = (int32_t)(g - ri * stride);
    if (ri == spill) {
        regions[r.home[b]].spilled--;
        r.home[b] = -1;
    }
    r.owner_list[b] = -1;
    r.owner_idx[b]  = -1;
    r.free_low.push(b);
    n_used--;
    r.used--;
    lower_hwm(r);
}

// Block src of region `from` to block dst of region `to` (dst free, taken by the caller): its rows, its owner (told
// of the new id), and the regions' counts.
void kvzap_block_pool::move_block(region & from, int32_t src, region & to, int32_t dst,
                                  const std::function<void(int32_t, int32_t, int32_t)> & on_move) {
    const int64_t fi = &from - regions.data(), ti = &to - regions.data();
    copy_rows((ti * stride + dst) * bs, (fi * stride + src) * bs, bs);
    to.owner_list[dst] = from.owner_list[src];
    to.owner_idx[dst]  = from.owner_idx[src];
    on_move(to.owner_list[dst], to.owner_idx[dst], (int32_t)(ti * stride + dst));
    if (fi == spill) {
        if (ti == spill) {
            to.home[dst] = from.home[src];
        } else {
            to.spilled--;
        }
        from.home[src] = -1;
    } else if (ti == spill) {
        to.home[dst] = (int32_t)fi;
        from.spilled++;
    }
    from.owner_list[src] = -1;
    from.owner_idx[src]  = -1;
    from.free_low.push(src);
    from.used--;
    to.used++;
    to.hwm = std::max<int64_t>(to.hwm, dst + 1);
    lower_hwm(from);
}

int64_t kvzap_block_pool::whole_blocks(int64_t n) const {
    const size_t chunk = chunk_bytes();
    // per range: the chunks that n blocks fill (up to less than a block before their end: k chunks are full once n
    // reaches floor(k * chunk / bb), so k = floor(((n + 1) * bb - 1) / chunk)), and the blocks that fit in them. The
    // count maps itself to itself: whole_blocks(whole_blocks(n)) == whole_blocks(n) where K and V rows are alike.
    auto fit = [&](size_t row) {
        const size_t bb = (size_t)bs * row;
        const size_t k  = ((size_t)(n + 1) * bb - 1) / chunk;
        return std::min<int64_t>(n, (int64_t)(k * chunk / bb));
    };
    return std::min({ fit(rk), fit(rv), stride });
}

// The blocks of a region's last, partly used chunk go to the spill (ascending: in their order), so that the region
// gives that chunk back; a region then holds whole chunks only. Only where K and V rows are alike: else the chunks of
// the two ranges end at different blocks, and a region would shed block after block. A chunk that lacks at most a
// sixteenth of its blocks stays: its room is what the next tokens take first, and its blocks, spilled, would come
// back with the first chunk's worth of tokens (every block moved twice for a few decoded tokens).
int64_t kvzap_block_pool::spill_tails(const std::function<void(int32_t, int32_t, int32_t)> & on_move) {
    if (spill < 0 || rk != rv) return 0;
    region & s              = regions[spill];
    int64_t moved           = 0;
    const int64_t per_chunk = blocks_per_chunk();
    for (int32_t ri = 0; ri < n_home; ri++) {
        region & r       = regions[ri];
        const int64_t t0 = whole_blocks(r.hwm);
        if (t0 == r.hwm || whole_blocks(r.hwm + per_chunk) - r.hwm <= std::max<int64_t>(1, per_chunk / 16)) continue;
        for (int64_t b = t0; b < r.hwm; b++) {
            if (r.owner_list[b] < 0) continue;
            const int32_t dst = take(s, true);
            if (dst < 0) return moved; // the spill is full or cannot grow: the tails stay
            move_block(r, (int32_t)b, s, dst, on_move);
            moved++;
        }
    }
    return moved;
}

// Regions take their blocks back from the spill: into whole chunks their spilled blocks fill (committed now), and into
// free blocks of their committed memory when there are a quarter chunk of them or a chunk was just committed (not for
// every hole: a hole is refilled by the region's next block anyway).
int64_t kvzap_block_pool::unspill(const std::function<void(int32_t, int32_t, int32_t)> & on_move) {
    if (spill < 0 || regions[spill].used == 0) return 0;
    const int64_t chunk_blocks = blocks_per_chunk();
    std::vector<int64_t> room(n_home, 0);
    bool any = false;
    for (int32_t ri = 0; ri < n_home; ri++) {
        region & r = regions[ri];
        if (r.spilled == 0) continue;
        const int64_t holes = (int64_t)r.free_low.size();
        bool grew           = false;
        if (r.spilled > holes + (committed_blocks(r) - r.frontier)) {
            // the fresh ids that would hold every spilled block the holes do not, cut to whole chunks
            const int64_t to = whole_blocks(r.frontier + (r.spilled - holes));
            if (to > committed_blocks(r) && commit_to(r, to)) grew = true;
        }
        const int64_t free_now = (int64_t)r.free_low.size() + (committed_blocks(r) - r.frontier);
        if (grew || free_now >= std::max<int64_t>(1, chunk_blocks / 4)) room[ri] = std::min(free_now, r.spilled);
        any = any || room[ri] > 0;
    }
    if (!any) return 0;
    region & s    = regions[spill];
    int64_t moved = 0;
    // in the spill's order, which is the order they were taken in (a head's blocks of a ubatch come one after the
    // other, and stay so in the region: reversed, they would read slower, by a quarter in a CPU decode step)
    for (int64_t b = 0; b < s.frontier; b++) {
        if (s.owner_list[b] < 0) continue;
        const int32_t ri = s.home[b];
        if (room[ri] == 0) continue;
        const int32_t dst = take(regions[ri], false);
        if (dst < 0) { // (cannot happen: room counts the region's free committed blocks)
            room[ri] = 0;
            continue;
        }
        move_block(s, (int32_t)b, regions[ri], dst, on_move);
        room[ri]--;
        moved++;
    }
    return moved;
}

int64_t kvzap_block_pool::compact(const std::function<void(int32_t list, int32_t idx, int32_t dst)> & on_move) {
    // Holes are refilled first by new blocks (lowest first); moving is for what stays open: more than a quarter of a
    // chunk (the pages they keep resident) or 1/64 of use, so that a move of a few blocks is not made every ubatch.
    const int64_t chunk_blocks = blocks_per_chunk();
    int64_t moved              = unspill(on_move);
    for (auto & r : regions) {
        if (r.hwm - r.used > std::max(r.used / 64, chunk_blocks / 4)) {
            while (!r.free_low.empty() && r.free_low.top() < r.hwm - 1) {
                const int32_t dst = r.free_low.top();
                r.free_low.pop();
                move_block(r, (int32_t)r.hwm - 1, r, dst, on_move);
                moved++;
            }
        }
    }
    if (!bulk) moved += spill_tails(on_move);
    for (auto & r : regions) {
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
            if (!r.home.empty()) r.home.resize(r.frontier);
        }
    }
    for (auto & r : regions) decommit_to(r, r.hwm);
    return moved;
}

void kvzap_block_pool::copy_rows(int64_t dst, int64_t src, int64_t n) {
    for (int64_t i = 0; i < n; i++) moves.record(dst + i, src + i);
}

// Host memory: straight to their places, a run of consecutive rows (a block's) at a time; or every source first into
// scratch, then every destination from it.
void kvzap_block_pool::apply_host(const std::vector<kvzap_row_move> & set, bool overlap) {
    char * kb = (char *)k->base();
    char * vb = (char *)v->base();
    if (!overlap) {
        for (size_t i = 0; i < set.size();) {
            size_t j = i + 1;
            while (j < set.size() && set[j].src == set[j - 1].src + 1 && set[j].dst == set[j - 1].dst + 1) j++;
            const size_t n = j - i;
            memcpy(kb + (size_t)set[i].dst * rk, kb + (size_t)set[i].src * rk, n * rk);
            memcpy(vb + (size_t)set[i].dst * rv, vb + (size_t)set[i].src * rv, n * rv);
            i = j;
        }
        return;
    }
    scratch.resize(set.size() * (rk + rv));
    char * sk = (char *)scratch.data();
    char * sv = sk + set.size() * rk;
    for (size_t i = 0; i < set.size(); i++) {
        memcpy(sk + i * rk, kb + (size_t)set[i].src * rk, rk);
        memcpy(sv + i * rv, vb + (size_t)set[i].src * rv, rv);
    }
    for (size_t i = 0; i < set.size(); i++) {
        memcpy(kb + (size_t)set[i].dst * rk, sk + i * rk, rk);
        memcpy(vb + (size_t)set[i].dst * rv, sv + i * rv, rv);
    }
    if (scratch.size() > KVZAP_VMEM_CHUNK * 4) { // a trim's or a long prompt's: not held on to
        scratch.clear();
        scratch.shrink_to_fit();
    }
}

bool kvzap_block_pool::flush() {
    if (moves.empty()) return true;
    bool overlap                            = false;
    const std::vector<kvzap_row_move> & set = moves.resolve(overlap);
    bool ok                                 = true;
    if (dev < 0) {
        apply_host(set, overlap);
    } else if (!set.empty()) {
        std::string err;
        ok = kvzap_vmem_cuda_moves(dev, *k, *v, rk, rv, set.data(), set.size(), overlap, err);
        if (!ok) error = err;
    }
    moves.clear();
    return ok;
}
