// A GPU timeline for machines without nsys: a CUDA injection library (CUDA_INJECTION64_PATH) that records, through
// CUPTI's activity API, every kernel (graph-launched ones included), memcpy and memset with its GPU start and end,
// and every runtime and driver API call with its host start and end, all on CUPTI's one clock. At exit it writes
// them to $KVZAP_TRACE_DIR/trace-<pid>.csv, one line a record:
//   K,start,end,stream,graph,name      a kernel                 M,start,end,stream,copyKind,bytes   a memcpy
//   S,start,end,stream,0,bytes         a memset                 R|D,start,end,thread,cbid,name      an API call
//   T,cupti,realtime,0,0,clock         the two clocks read together (ns), to place wall-clock marks on the trace
// trace-steps.py reads them. Build (on the GPU machine):
//   g++ -O2 -shared -fPIC -I$CUDA/include scripts/gpu/cupti-trace.cpp -o /tmp/libkvzap-trace.so -L$CUDA/lib64 -lcupti
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

struct record {
    char kind;
    uint64_t start, end;
    uint32_t a;     // stream, or thread
    uint64_t b;     // graph id, copy kind, or callback id
    uint64_t bytes; // memcpy and memset
    const char * name;
};

// The state lives on the heap and is never destroyed: CUPTI can hand in a completed buffer after the write at exit,
// from its own thread or from the driver's teardown, when static objects would already be gone (a traced 128k run
// crashed at exit). Buffers that come after the write are freed unread.
struct state {
    std::mutex mu;
    std::vector<record> records;
    std::unordered_map<uint64_t, const char *> names;
    bool written = false;
};
state & S = *new state;
uint64_t clock_cupti = 0, clock_real = 0;

void CUPTIAPI buffer_requested(uint8_t ** buffer, size_t * size, size_t * max_records) {
    const size_t n = 8u << 20;
    *buffer        = (uint8_t *)aligned_alloc(8, n);
    *size          = n;
    *max_records   = 0;
}

// with S.mu held
const char * api_name(CUpti_CallbackDomain domain, CUpti_CallbackId cbid) {
    const uint64_t key = ((uint64_t)domain << 32) | cbid;
    auto it            = S.names.find(key);
    if (it != S.names.end()) return it->second;
    const char * n = nullptr;
    if (cuptiGetCallbackName(domain, cbid, &n) != CUPTI_SUCCESS || !n) n = "?";
    return S.names[key] = strdup(n);
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t * buffer, size_t, size_t valid) {
    std::lock_guard<std::mutex> lock(S.mu);
    CUpti_Activity * a = nullptr;
    while (!S.written && cuptiActivityGetNextRecord(buffer, valid, &a) == CUPTI_SUCCESS) {
        switch (a->kind) {
            case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
            case CUPTI_ACTIVITY_KIND_KERNEL: {
                const auto * k = (const CUpti_ActivityKernel10 *)a;
                S.records.push_back({ 'K', k->start, k->end, k->streamId, k->graphId, 0, strdup(k->name ? k->name : "?") });
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMCPY: {
                const auto * m = (const CUpti_ActivityMemcpy6 *)a;
                S.records.push_back({ 'M', m->start, m->end, m->streamId, m->copyKind, m->bytes, nullptr });
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMSET: {
                const auto * m = (const CUpti_ActivityMemset4 *)a;
                S.records.push_back({ 'S', m->start, m->end, m->streamId, 0, m->bytes, nullptr });
                break;
            }
            case CUPTI_ACTIVITY_KIND_RUNTIME:
            case CUPTI_ACTIVITY_KIND_DRIVER: {
                const auto * r                   = (const CUpti_ActivityAPI *)a;
                const bool rt                    = a->kind == CUPTI_ACTIVITY_KIND_RUNTIME;
                const CUpti_CallbackDomain where = rt ? CUPTI_CB_DOMAIN_RUNTIME_API : CUPTI_CB_DOMAIN_DRIVER_API;
                S.records.push_back({ rt ? 'R' : 'D', r->start, r->end, r->threadId, r->cbid, 0, api_name(where, r->cbid) });
                break;
            }
            default:
                break;
        }
    }
    free(buffer);
}

void write_out() {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    std::lock_guard<std::mutex> lock(S.mu);
    S.written = true;
    const char * dir = getenv("KVZAP_TRACE_DIR");
    const std::string path =
        std::string(dir && *dir ? dir : "/tmp") + "/trace-" + std::to_string((long)getpid()) + ".csv";
    FILE * f = fopen(path.c_str(), "w");
    if (!f) return;
    fprintf(f, "T,%llu,%llu,0,0,clock\n", (unsigned long long)clock_cupti, (unsigned long long)clock_real);
    for (const record & r : S.records) {
        if (r.kind == 'K' || r.kind == 'R' || r.kind == 'D') {
            fprintf(f, "%c,%llu,%llu,%u,%llu,%s\n", r.kind, (unsigned long long)r.start, (unsigned long long)r.end, r.a,
                    (unsigned long long)r.b, r.name);
        } else {
            fprintf(f, "%c,%llu,%llu,%u,%llu,%llu\n", r.kind, (unsigned long long)r.start, (unsigned long long)r.end,
                    r.a, (unsigned long long)r.b, (unsigned long long)r.bytes);
        }
    }
    fclose(f);
    fprintf(stderr, "kvzap trace: %zu records in %s\n", S.records.size(), path.c_str());
}

} // namespace

extern "C" int InitializeInjection(void) {
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) return 0;
    const CUpti_ActivityKind kinds[] = { CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                         CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_RUNTIME,
                                         CUPTI_ACTIVITY_KIND_DRIVER };
    for (CUpti_ActivityKind k : kinds) cuptiActivityEnable(k);
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    cuptiGetTimestamp(&clock_cupti);
    clock_real = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    atexit(write_out);
    return 1;
}
