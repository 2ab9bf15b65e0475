// Checks of the KV pool's row moves on the host, built with the addon (kvzap-native-check) and run by
// native/tests/native-check.test.ts: kvzap_move_log's resolved set, applied straight where it says there is no
// overlap and through a gather always, leaves every slot as the moves applied one by one in order do; and a host
// kvzap_block_pool, whose copy_rows now records and whose flush applies, holds the same bytes as such copies.
// Prints one line per check and exits non-zero when one fails.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kvzap-moves.h"
#include "kvzap-pool.h"

static int failures = 0;

static void report(bool ok, const std::string & what) {
    std::printf("%s: %s\n", ok ? "PASS" : "FAIL", what.c_str());
    if (!ok) failures++;
}

// Slot contents as ids: a slot holds the id of the slot whose original rows it has.
static std::vector<int64_t> in_order(int64_t n_slots, const std::vector<kvzap_row_move> & seq) {
    std::vector<int64_t> v(n_slots);
    for (int64_t i = 0; i < n_slots; i++) v[i] = i;
    for (const auto & m : seq) v[m.dst] = v[m.src];
    return v;
}

static std::vector<int64_t> resolved(int64_t n_slots, const std::vector<kvzap_row_move> & set, bool straight) {
    std::vector<int64_t> v(n_slots);
    for (int64_t i = 0; i < n_slots; i++) v[i] = i;
    if (straight) {
        for (const auto & m : set) v[m.dst] = v[m.src];
    } else {
        std::vector<int64_t> g;
        for (const auto & m : set) g.push_back(v[m.src]);
        for (size_t i = 0; i < set.size(); i++) v[set[i].dst] = g[i];
    }
    return v;
}

// One round of the log: the set it resolves, applied both ways where it may be, against the sequence in order.
static void check_log(kvzap_move_log & log, int64_t n_slots, const std::vector<kvzap_row_move> & seq,
                      const std::string & what) {
    for (const auto & m : seq) log.record(m.dst, m.src);
    bool overlap                            = false;
    const std::vector<kvzap_row_move> & set = log.resolve(overlap);
    const std::vector<int64_t> want         = in_order(n_slots, seq);
    const bool gathered                     = resolved(n_slots, set, false) == want;
    // the straight application is valid exactly when no source is another move's destination
    bool any_src_written = false;
    {
        std::vector<uint8_t> is_dst(n_slots, 0);
        for (const auto & m : set) is_dst[m.dst] = 1;
        for (const auto & m : set) any_src_written = any_src_written || is_dst[m.src];
    }
    bool unique = true, changed = true;
    {
        std::vector<uint8_t> seen(n_slots, 0);
        for (const auto & m : set) {
            unique      = unique && !seen[m.dst];
            seen[m.dst] = 1;
            changed     = changed && m.src != m.dst;
        }
    }
    const bool straight_ok = overlap || resolved(n_slots, set, true) == want;
    report(gathered && straight_ok && overlap == any_src_written && unique && changed,
           what + ": " + std::to_string(seq.size()) + " moves -> " + std::to_string(set.size()) + " independent" +
               (overlap ? " (overlap: gathered)" : " (straight)"));
    log.clear();
}

// Removals as the memory makes them: the list's last entry fills the hole, over many lists of consecutive slots.
static std::vector<kvzap_row_move> removals(std::mt19937 & rng, int n_lists, int64_t list_slots, int per_list) {
    std::vector<kvzap_row_move> seq;
    for (int l = 0; l < n_lists; l++) {
        int64_t len = list_slots;
        for (int i = 0; i < per_list && len > 1; i++) {
            const int64_t idx = std::uniform_int_distribution<int64_t>(0, len - 1)(rng);
            if (idx != len - 1) seq.push_back({ l * list_slots + len - 1, l * list_slots + idx });
            len--;
        }
    }
    return seq;
}

static void check_move_log() {
    std::mt19937 rng(7);
    kvzap_move_log log;
    check_log(log, 64 * 1024, removals(rng, 64, 1024, 700), "removals in 64 lists");
    // then compaction: whole blocks of 16 rows from the top into free blocks below, after the removals
    {
        std::vector<kvzap_row_move> seq = removals(rng, 16, 512, 300);
        for (int b = 0; b < 40; b++) {
            const int64_t src = (int64_t)(511 - b) * 16, dst = (int64_t)(b * 3) * 16;
            for (int r = 0; r < 16; r++) seq.push_back({ src + r, dst + r });
        }
        check_log(log, 16 * 512, seq, "removals, then block moves onto rows they moved");
    }
    // arbitrary moves among a few slots: chains, cycles, moves back home
    for (int round = 0; round < 50; round++) {
        std::vector<kvzap_row_move> seq;
        const int n = std::uniform_int_distribution<int>(1, 200)(rng);
        for (int i = 0; i < n; i++) {
            seq.push_back({ std::uniform_int_distribution<int64_t>(0, 31)(rng),
                            std::uniform_int_distribution<int64_t>(0, 31)(rng) });
        }
        check_log(log, 32, seq, "arbitrary moves among 32 slots, round " + std::to_string(round));
    }
    check_log(log, 8, { { 0, 1 }, { 1, 0 } }, "a swap through one slot (1 <- 0, then 0 <- 1)");
    check_log(log, 8, { { 0, 1 }, { 1, 2 }, { 2, 0 } }, "a chain 1 <- 0, 2 <- 1, 0 <- 2");
    check_log(log, 8, {}, "no moves");
    // slots far apart (pages made on demand), more than the log keeps between flushes, and the round after that
    {
        std::vector<kvzap_row_move> seq;
        for (int64_t i = 0; i < 20000; i++) seq.push_back({ i * 997 + 5, i * 1021 + 3 });
        check_log(log, 20000 * 1021 + 8, seq, "20000 moves over 20M slots, a page each (released after)");
        check_log(log, 64 * 1024, removals(rng, 64, 1024, 500), "removals after the release");
    }
}

// A host pool: rows filled with their slot's id, then removals and block moves through copy_rows, and flush.
static void check_host_pool() {
    const int32_t bs = 16;
    const size_t rk = 64, rv = 48; // bytes; K and V rows of different sizes
    kvzap_block_pool pool;
    std::string err;
    if (!pool.init(4096, 4, 1024, bs, rk, rv, -1, err)) {
        report(false, "host pool init: " + err);
        return;
    }
    std::mt19937 rng(11);
    std::vector<int32_t> blocks;
    for (int i = 0; i < 200; i++) {
        const int32_t b = pool.alloc(i % 4, i, 0);
        if (b < 0) {
            report(false, "host pool alloc");
            return;
        }
        blocks.push_back(b);
    }
    // every row of every block: its slot id in each 8-byte word
    auto fill = [&](int64_t slot, int64_t id) {
        char * k = (char *)pool.k_base() + slot * rk;
        char * v = (char *)pool.v_base() + slot * rv;
        for (size_t o = 0; o < rk; o += 8) std::memcpy(k + o, &id, 8);
        for (size_t o = 0; o < rv; o += 8) std::memcpy(v + o, &id, 8);
    };
    std::vector<int64_t> slots;
    for (int32_t b : blocks)
        for (int r = 0; r < bs; r++) slots.push_back((int64_t)b * bs + r);
    for (int64_t s : slots) fill(s, s);
    // removals within each block pair's rows, then block-sized moves between blocks, as one sequence
    std::vector<kvzap_row_move> seq;
    for (int i = 0; i < 3000; i++) {
        const int64_t a = slots[std::uniform_int_distribution<size_t>(0, slots.size() - 1)(rng)];
        const int64_t b = slots[std::uniform_int_distribution<size_t>(0, slots.size() - 1)(rng)];
        seq.push_back({ a, b });
    }
    for (int i = 0; i < 20; i++) {
        const int32_t from = blocks[std::uniform_int_distribution<size_t>(0, blocks.size() - 1)(rng)];
        const int32_t to   = blocks[std::uniform_int_distribution<size_t>(0, blocks.size() - 1)(rng)];
        if (from == to) continue;
        for (int r = 0; r < bs; r++) seq.push_back({ (int64_t)from * bs + r, (int64_t)to * bs + r });
    }
    std::vector<int64_t> want_id;
    {
        std::vector<int64_t> max_slot(slots.back() + 1);
        for (size_t i = 0; i < max_slot.size(); i++) max_slot[i] = (int64_t)i;
        for (const auto & m : seq) max_slot[m.dst] = max_slot[m.src];
        want_id = max_slot;
    }
    for (const auto & m : seq) pool.copy_rows(m.dst, m.src, 1);
    const bool flushed = pool.flush();
    size_t bad         = 0;
    for (int64_t s : slots) {
        const char * k = (const char *)pool.k_base() + s * rk;
        const char * v = (const char *)pool.v_base() + s * rv;
        for (size_t o = 0; o < rk; o += 8) bad += std::memcmp(k + o, &want_id[s], 8) != 0;
        for (size_t o = 0; o < rv; o += 8) bad += std::memcmp(v + o, &want_id[s], 8) != 0;
    }
    report(flushed && bad == 0, "host pool: " + std::to_string(seq.size()) + " row moves applied by flush, " +
                                    std::to_string(bad) + " words differ from in-order copies");
    // the same pool again: a removal-only round (no overlap: straight, in runs)
    for (int64_t s : slots) fill(s, s);
    std::vector<kvzap_row_move> rem;
    for (size_t l = 0; l + 1 < blocks.size(); l += 2) {
        int64_t len = 2 * bs;
        for (int i = 0; i < 20; i++, len--) {
            const int64_t idx = std::uniform_int_distribution<int64_t>(0, len - 1)(rng);
            const auto at     = [&](int64_t j) { return (int64_t)blocks[l + j / bs] * bs + j % bs; };
            if (idx != len - 1) rem.push_back({ at(len - 1), at(idx) });
        }
    }
    std::vector<int64_t> want2(slots.back() + 1);
    for (size_t i = 0; i < want2.size(); i++) want2[i] = (int64_t)i;
    for (const auto & m : rem) want2[m.dst] = want2[m.src];
    for (const auto & m : rem) pool.copy_rows(m.dst, m.src, 1);
    const bool flushed2 = pool.flush();
    bad                 = 0;
    for (int64_t s : slots) {
        const char * k = (const char *)pool.k_base() + s * rk;
        for (size_t o = 0; o < rk; o += 8) bad += std::memcmp(k + o, &want2[s], 8) != 0;
    }
    report(flushed2 && bad == 0, "host pool: " + std::to_string(rem.size()) + " removals applied by flush, " +
                                     std::to_string(bad) + " words differ");
}

int main() {
    check_move_log();
    check_host_pool();
    std::printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
