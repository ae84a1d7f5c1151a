/* trace.h - Chrome trace-event recording (the public lf_trace).
 *
 * Events go into memory (chunks of a few thousand, under a mutex, so any
 * thread may record) and are written as one JSON file by lf_trace_write:
 * complete spans (ph "X") on named tracks, and counters (ph "C"). Times are
 * lf__now_ns() values, written relative to the trace's creation. A NULL
 * trace records nothing: every call site costs one test when tracing is off. */
#ifndef LF_TRACE_H
#define LF_TRACE_H

#include "../common/lf_common.h"

/* A new track (a "thread" in the viewer) named name: its id. The spans of
 * a track must nest, unless it has lanes: then spans that overlap (read
 * batches in flight together) are spread over lanes "NAME 1", "NAME 2"...
 * when written. */
int lf__trace_track(lf_trace *t, const char *name, bool lanes);
/* A span [t0, t1) on a track. name is a static string. layer and token are
 * written as args when >= 0, bytes and reads when > 0. */
void lf__trace_span(lf_trace *t, int track, const char *name, uint64_t t0, uint64_t t1, int32_t layer, int64_t token,
                    uint64_t bytes, uint64_t reads);
/* A counter's value at time ts (name is a static string). */
void lf__trace_counter(lf_trace *t, const char *name, uint64_t ts, double value);

#endif
