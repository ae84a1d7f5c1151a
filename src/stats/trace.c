/* trace.c - Chrome trace-event recording. */
#include "trace.h"
#include "../gguf/gguf.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define TRACE_CHUNK 4096
#define TRACE_TRACKS 64
#define TRACE_LANES 16

typedef struct trace_event {
    const char *name;
    uint64_t t0, t1;  /* counters: t0 only */
    uint64_t bytes, reads;
    int64_t token;
    double value;
    int32_t layer;
    int16_t track;    /* -1: a counter */
    int16_t lane;     /* laned tracks: set when written */
} trace_event;

typedef struct trace_chunk {
    struct trace_chunk *next;
    size_t n;
    trace_event ev[TRACE_CHUNK];
} trace_chunk;

struct lf_trace {
    pthread_mutex_t mu;
    uint64_t t_origin;
    trace_chunk *head, *tail;
    uint64_t n_events;
    bool dropped;     /* an allocation failed: the file says so */
    char track_names[TRACE_TRACKS][32];
    bool track_lanes[TRACE_TRACKS];
    int n_tracks;
};

lf_status lf_trace_create(lf_trace **out) {
    if (!out) return LF_E_INVALID_ARG;
    lf_trace *t = calloc(1, sizeof *t);
    if (!t) return LF_E_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->t_origin = lf__now_ns();
    *out = t;
    return LF_OK;
}

void lf_trace_destroy(lf_trace *t) {
    if (!t) return;
    for (trace_chunk *c = t->head; c;) {
        trace_chunk *next = c->next;
        free(c);
        c = next;
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

uint64_t lf_trace_event_count(lf_trace *t) {
    if (!t) return 0;
    pthread_mutex_lock(&t->mu);
    const uint64_t n = t->n_events;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int lf__trace_track(lf_trace *t, const char *name, bool lanes) {
    if (!t) return -1;
    pthread_mutex_lock(&t->mu);
    int id = t->n_tracks < TRACE_TRACKS ? t->n_tracks++ : TRACE_TRACKS - 1;
    snprintf(t->track_names[id], sizeof t->track_names[id], "%s", name);
    t->track_lanes[id] = lanes;
    pthread_mutex_unlock(&t->mu);
    return id;
}

static void record(lf_trace *t, const trace_event *e) {
    pthread_mutex_lock(&t->mu);
    if (!t->tail || t->tail->n == TRACE_CHUNK) {
        trace_chunk *c = malloc(sizeof *c);
        if (!c) {
            t->dropped = true;
            pthread_mutex_unlock(&t->mu);
            return;
        }
        c->next = NULL;
        c->n = 0;
        if (t->tail) t->tail->next = c;
        else t->head = c;
        t->tail = c;
    }
    t->tail->ev[t->tail->n++] = *e;
    t->n_events++;
    pthread_mutex_unlock(&t->mu);
}

void lf__trace_span(lf_trace *t, int track, const char *name, uint64_t t0, uint64_t t1, int32_t layer, int64_t token,
                    uint64_t bytes, uint64_t reads) {
    if (!t || track < 0) return;
    const trace_event e = {name, t0, t1 > t0 ? t1 : t0, bytes, reads, token, 0.0, layer, (int16_t)track, 0};
    record(t, &e);
}

void lf__trace_counter(lf_trace *t, const char *name, uint64_t ts, double value) {
    if (!t) return;
    const trace_event e = {name, ts, ts, 0, 0, -1, value, -1, -1, 0};
    record(t, &e);
}

/* Microseconds since the origin, as the format wants them. */
static double us(const lf_trace *t, uint64_t ns) { return ns > t->t_origin ? (double)(ns - t->t_origin) / 1e3 : 0.0; }

/* The viewer's thread id of a track's lane. */
static int tid_of(int track, int lane) { return 1 + track * TRACE_LANES + lane; }

static int by_start(const void *a, const void *b) {
    const trace_event *x = *(trace_event *const *)a, *y = *(trace_event *const *)b;
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

static void write_event(FILE *f, const lf_trace *t, const trace_event *e) {
    if (e->track < 0) {
        fprintf(f, ",\n{\"name\": \"%s\", \"ph\": \"C\", \"pid\": 1, \"tid\": 0, \"ts\": %.3f, \"args\": {\"value\": %.6g}}",
                e->name, us(t, e->t0), e->value);
        return;
    }
    fprintf(f, ",\n{\"name\": \"%s\", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, \"args\": {",
            e->name, tid_of(e->track, e->lane), us(t, e->t0), (double)(e->t1 - e->t0) / 1e3);
    const char *sep = "";
    if (e->layer >= 0) fprintf(f, "\"layer\": %" PRId32, e->layer), sep = ", ";
    if (e->token >= 0) fprintf(f, "%s\"token\": %" PRId64, sep, e->token), sep = ", ";
    if (e->bytes) fprintf(f, "%s\"bytes\": %" PRIu64, sep, e->bytes), sep = ", ";
    if (e->reads) fprintf(f, "%s\"reads\": %" PRIu64, sep, e->reads);
    fputs("}}", f);
}

lf_status lf_trace_write(lf_trace *t, const char *path, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    if (!t || !path) return LF_E_INVALID_ARG;
    lf_outfile out = {.fd = -1};
    lf_status st = lf__outfile_open(&out, path, true, &err);
    if (st) goto done;
    /* through a duplicate descriptor: fclose closes it, commit the original */
    const int fd = dup(out.fd);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        lf__outfile_abort(&out);
        st = lf__err_set(&err, LF_E_IO, "%s: cannot write: %s", path, strerror(errno));
        goto done;
    }
    pthread_mutex_lock(&t->mu);
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"producer\": \"llmflash %s\", \"dropped_events\": %s},\n"
            "\"traceEvents\": [\n", lf_version(), t->dropped ? "true" : "false");
    fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": 0, \"args\": {\"name\": \"llmflash\"}}");
    /* spans of laned tracks, by start: each takes the first lane free by then */
    uint64_t lane_end[TRACE_TRACKS][TRACE_LANES] = {{0}};
    trace_event **laned = NULL;
    size_t n_laned = 0;
    for (const trace_chunk *c = t->head; c; c = c->next)
        for (size_t i = 0; i < c->n; i++) n_laned += c->ev[i].track >= 0 && t->track_lanes[c->ev[i].track];
    if (n_laned && (laned = malloc(n_laned * sizeof *laned))) {
        size_t k = 0;
        for (trace_chunk *c = t->head; c; c = c->next)
            for (size_t i = 0; i < c->n; i++)
                if (c->ev[i].track >= 0 && t->track_lanes[c->ev[i].track]) laned[k++] = &c->ev[i];
        qsort(laned, n_laned, sizeof *laned, by_start);
        for (k = 0; k < n_laned; k++) {
            trace_event *e = laned[k];
            int lane = 0;
            while (lane < TRACE_LANES - 1 && lane_end[e->track][lane] > e->t0) lane++;
            lane_end[e->track][lane] = e->t1;
            e->lane = (int16_t)lane;
        }
    }
    free(laned);
    for (int k = 0; k < t->n_tracks; k++) {
        int lanes = 1;
        while (t->track_lanes[k] && lanes < TRACE_LANES && lane_end[k][lanes]) lanes++;
        for (int lane = 0; lane < lanes; lane++)
            fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": %d, \"args\": {\"name\": \"%s%s%.0d\"}}",
                    tid_of(k, lane), t->track_names[k], t->track_lanes[k] ? " " : "", t->track_lanes[k] ? lane + 1 : 0);
    }
    for (const trace_chunk *c = t->head; c; c = c->next)
        for (size_t i = 0; i < c->n; i++) write_event(f, t, &c->ev[i]);
    fputs("\n]}\n", f);
    pthread_mutex_unlock(&t->mu);
    const bool written = !ferror(f);
    if (fclose(f) != 0 || !written) {
        lf__outfile_abort(&out);
        st = lf__err_set(&err, LF_E_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    st = lf__outfile_commit(&out, &err);
done:
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}
