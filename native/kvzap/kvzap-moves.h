// Row moves of the KV pool, recorded in the order they are made and resolved as they come. A removal moves a list's
// last entry into the hole, compaction moves whole blocks, and a later move may read a slot an earlier one wrote; the
// rows themselves move once, when the pool is flushed, as the equivalent set of independent moves: for every slot
// written, the slot whose original rows it ends up holding. Recording a move is two lookups in a direct map of the
// slots touched (pages of slots, made as they are first touched), so that a ubatch's tens of thousands of removals
// cost no hashing and no allocation per move.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

struct kvzap_row_move {
    int64_t src, dst;
};

class kvzap_move_log {
public:
    // Slot dst takes the rows slot src holds now (dst == src: nothing).
    void record(int64_t dst, int64_t src);
    bool empty() const { return written.empty(); }
    // The independent moves equivalent to those recorded since the last clear, in the order their destinations were
    // first written: (src, dst) for each slot written whose content is no longer its own, src the slot whose original
    // rows it holds. `overlap`: some move's source is another's destination, so every source must be read before any
    // destination is written (a gather through scratch); otherwise each row can go straight to its place.
    const std::vector<kvzap_row_move> & resolve(bool & overlap);
    // Forgets what was recorded (the pages made stay for the next moves, up to MAX_KEPT slots of them).
    void clear();

private:
    static constexpr int PAGE_BITS   = 8;
    static constexpr int64_t PAGE    = int64_t(1) << PAGE_BITS;
    static constexpr int64_t NOT_SET = -1;
    // pages kept between flushes, in slots (32 MiB of them: a ubatch's removals touch a few pages per KV head)
    static constexpr size_t MAX_KEPT = size_t(1) << 22;
    // The original slot whose rows slot s holds, NOT_SET where s has not been written (it holds its own).
    int64_t origin(int64_t s) const;
    int64_t & entry(int64_t s); // the page of s made where it is missing

    std::vector<int32_t> page_of;    // by s >> PAGE_BITS: the page of those slots in `pages`, -1: none
    std::vector<int64_t> pages;      // [page][PAGE]
    std::vector<int64_t> written;    // slots written since clear, first-written order
    std::vector<kvzap_row_move> out; // resolve's result
};
