#include "kvzap-moves.h"

int64_t kvzap_move_log::origin(int64_t s) const {
    const int64_t pg = s >> PAGE_BITS;
    if (pg >= (int64_t)page_of.size() || page_of[pg] < 0) return NOT_SET;
    return pages[(size_t)page_of[pg] * PAGE + (s & (PAGE - 1))];
}

int64_t & kvzap_move_log::entry(int64_t s) {
    const int64_t pg = s >> PAGE_BITS;
    if (pg >= (int64_t)page_of.size()) page_of.resize((size_t)pg + 1, -1);
    if (page_of[pg] < 0) {
        page_of[pg] = (int32_t)(pages.size() / PAGE);
        pages.resize(pages.size() + PAGE, NOT_SET);
    }
    return pages[(size_t)page_of[pg] * PAGE + (s & (PAGE - 1))];
}

void kvzap_move_log::record(int64_t dst, int64_t src) {
    if (dst == src) return;
    const int64_t o = origin(src);
    int64_t & d     = entry(dst);
    if (d == NOT_SET) written.push_back(dst);
    d = o == NOT_SET ? src : o;
}

const std::vector<kvzap_row_move> & kvzap_move_log::resolve(bool & overlap) {
    out.clear();
    overlap = false;
    for (const int64_t dst : written) {
        const int64_t src = origin(dst);
        if (src != dst) out.push_back({ src, dst });
    }
    // a source is another move's destination exactly where it was written and no longer holds its own rows
    for (const auto & m : out) {
        const int64_t o = origin(m.src);
        if (o != NOT_SET && o != m.src) {
            overlap = true;
            break;
        }
    }
    return out;
}

void kvzap_move_log::clear() {
    if (pages.size() > MAX_KEPT) { // a rare large flush (a trim, a long prompt's compaction): its pages go
        page_of.clear();
        pages.clear();
        pages.shrink_to_fit();
    } else {
        for (const int64_t s : written) entry(s) = NOT_SET;
    }
    written.clear();
    out.clear();
}
