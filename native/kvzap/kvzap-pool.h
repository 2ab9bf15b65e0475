// The block pool: fixed-size blocks of KV rows in two virtual-memory ranges (K and V), each cut into regions of its own
// (one per layer), handed out lowest id first within a region, so that the blocks in use stay packed at the bottom of
// each region and the committed memory follows them. A region keeps one layer's blocks together in memory: a layer's
// attention then reads from its own pages only, as a stock cache's per-layer tensors do (spread over the whole pool,
// every layer's reads would touch every page, far more than the GPU's address translation caches hold). Compaction
// moves a region's highest blocks into its lowest holes when its high-water mark has drifted far above use, and gives
// the tail back. The pool knows nothing of layers, heads or positions: an owner is an opaque (list, index) pair, told
// of each move; block ids are global (region * stride + index in the region; the spill, last, has a size of its own).
//
// Memory is committed in chunks (2 MiB on a GPU), so a region that grew its own memory chunk by chunk would hold a
// partly used chunk in each range: with a region per layer, 64 of them for a 32-layer model (about 64 MiB, 0.7% of an
// 8B model's q8_0 cache at 128k). Instead a region keeps whole chunks only: once a batch is placed, the blocks of its
// partly used last chunk move to one shared region, the spill, and a token's new blocks past its chunks come from
// there, until they would fill a whole chunk of their region: then compaction commits that chunk and moves them into
// it. What the pool holds beyond its blocks in use is then the spill's partly used chunk and the holes compaction has
// not closed yet, whatever the number of layers; a batch moves at most a chunk of blocks per region.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "kvzap-moves.h"
#include "kvzap-vmem.h"

class kvzap_block_pool {
public:
    // Reserves address space for n_regions regions of region_cap blocks of `block_size` rows of row_k and row_v bytes
    // (and the spill, as large as a region), `capacity` blocks in use at most over all of them; commits nothing. device
    // < 0: host memory; otherwise the memory of that CUDA device (kvzap_vmem_cuda).
    bool init(int64_t capacity, int32_t n_regions, int64_t region_cap, int32_t block_size, size_t row_k, size_t row_v,
              int device, std::string & err);

    int64_t capacity() const { return cap; }
    int64_t in_use() const { return n_used; }
    int64_t n_free() const { return cap - n_used; }
    // Over the regions, one more than the highest block in use of each (what must stay committed), in blocks.
    int64_t high_water() const;
    // Slots (block rows) the ranges span: the regions and the spill.
    int64_t n_slots() const { return ((int64_t)n_home * stride + (spill >= 0 ? regions[spill].size : 0)) * bs; }
    // The commit granularity of the pool's memory, in bytes (a chunk of the backend).
    size_t chunk_bytes() const { return dev >= 0 ? KVZAP_VMEM_CHUNK : KVZAP_VMEM_HOST_CHUNK; }

    // A free block for `region`, committed, now owned by (list, idx): the region's lowest free one within its
    // committed chunks, else one of the spill (as the region's), else the region's lowest with a chunk committed for
    // it (in bulk: that before the spill); -1 when the pool is full or memory cannot be committed.
    int32_t alloc(int32_t region, int32_t list, int32_t idx);
    // Bulk: a batch of many tokens is being placed. Its blocks go into their regions' own memory, and compaction
    // leaves the regions' last chunks alone until bulk ends (a block moved to the spill and back for every chunk a
    // long prompt fills would be the whole prompt's KV copied twice).
    void set_bulk(bool on) { bulk = on; }
    void release(int32_t b);
    // Moves a region's blocks from the spill into it where they fill its free blocks or whole chunks of it. Then, in
    // every region and the spill, moves blocks from the top into the lowest free ones until none is free below its
    // high-water mark, if the mark is more than max(in_use / 64, a quarter chunk of blocks) above use. Out of bulk,
    // moves the blocks of each region's partly used last chunk to the spill. on_move(list, idx, new_block) for each
    // move. Then decommits what lies above the marks. Returns the number of blocks moved.
    int64_t compact(const std::function<void(int32_t list, int32_t idx, int32_t dst)> & on_move);
    // Every block free and all memory given back (the address space stays reserved).
    void reset();

    // Copies n rows from slot src to slot dst in both ranges (slot = block * block_size + row; the two runs do not
    // overlap). The moves are recorded (kvzap_move_log) and applied together by flush(), and before any memory is
    // given back.
    void copy_rows(int64_t dst, int64_t src, int64_t n);
    // Applies the recorded moves, each row once (on a device: one kernel launch, or two through scratch); call before
    // the pool's rows are read. False, with err(), on failure.
    bool flush();
    int device() const { return dev; }

    void * k_base() const { return k->base(); }
    void * v_base() const { return v->base(); }
    size_t reserved_bytes() const { return k ? k->reserved_bytes() + v->reserved_bytes() : 0; }
    // the address space behind k_base() and v_base(): the regions and one spare chunk (kvzap_block_pool::init)
    size_t k_reserved_bytes() const { return k ? k->reserved_bytes() : 0; }
    size_t v_reserved_bytes() const { return v ? v->reserved_bytes() : 0; }
    size_t committed_bytes() const;
    size_t block_bytes() const { return (size_t)bs * (rk + rv); }
    const std::string & err() const { return error; }

private:
    struct region {
        std::unique_ptr<kvzap_vmem> k, v; // this region's part of each range
        int64_t used = 0;
        int64_t hwm  = 0;
        // Ids below `frontier` have been handed out before; those of them not in use are in `free_low` (a min-heap).
        // Every id at or above `frontier` is free, so the bookkeeping grows with the high-water mark, not the capacity.
        int64_t frontier = 0;
        std::priority_queue<int32_t, std::vector<int32_t>, std::greater<int32_t>> free_low; // ids in the region
        std::vector<int32_t> owner_list, owner_idx; // by id in the region below frontier; owner_list -1: free
        std::vector<int32_t> home;                  // the spill only: by id, the region whose block it is
        int64_t spilled = 0;                        // a layer's region: its blocks that live in the spill
        int64_t size    = 0;                        // ids: a layer's region `stride`, the spill its own size
    };
    bool commit_to(region & r, int64_t blocks);
    void decommit_to(region & r, int64_t blocks);
    void lower_hwm(region & r);
    // The lowest free id of r: a hole, else a fresh one (committing memory for it when `grow`, else only within the
    // blocks already committed); -1 when there is none.
    int32_t take(region & r, bool grow);
    // Whole blocks a chunk of the larger range holds (at least 1).
    int64_t blocks_per_chunk() const;
    // Blocks of r whose K and V rows lie wholly in its committed memory.
    int64_t committed_blocks(const region & r) const;
    void move_block(region & from, int32_t src, region & to, int32_t dst,
                    const std::function<void(int32_t, int32_t, int32_t)> & on_move);
    int64_t unspill(const std::function<void(int32_t, int32_t, int32_t)> & on_move);
    int64_t spill_tails(const std::function<void(int32_t, int32_t, int32_t)> & on_move);
    // The most blocks, at most n, whose K and V rows end within whole chunks of a region.
    int64_t whole_blocks(int64_t n) const;

    std::unique_ptr<kvzap_vmem> k, v; // the whole ranges (declared first: the regions' parts go before them)
    std::vector<region> regions;      // the layers' regions, then the spill (when there are two regions or more)
    int32_t n_home = 0;               // regions that alloc() takes; the spill is regions[n_home] when spill >= 0
    int32_t spill  = -1;
    bool bulk      = false;
    int dev        = -1;
    kvzap_move_log moves;         // row moves not yet applied
    std::vector<uint8_t> scratch; // host pools: the rows of moves that must be gathered first
    void apply_host(const std::vector<kvzap_row_move> & set, bool overlap);
    int64_t cap    = 0;
    int64_t stride = 0;
    int32_t bs     = 1;
    size_t rk = 0, rv = 0;
    int64_t n_used = 0;
    std::string error;
};
