/* engine_hook.c - an inference engine of its own that takes only its FFNs
 * from llmflash: a small dense Llama forward pass (embeddings, RMS norms,
 * rotary attention with a KV cache, greedy sampling) that calls
 * lf_ffn_forward for every layer's FFN, which llmflash streams from a flash
 * file through its cache and loader. Public header only.
 *
 *   engine_hook FLASH_MODEL [N] [BUDGET]   N greedy tokens from BOS (default 200)
 *
 * With BUDGET (bytes), the model runs under that DRAM budget, so the FFN
 * streams through a neuron cache smaller than it; the text is the same.
 *
 * It reads the resident F32 weights itself from the file (lf_model_tensor_get
 * gives their offsets): a flash file converted with its resident tensors in
 * F32, as stories260K's are. Exit 1 on any error. */
#include <llmflash.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm;
} layer;

static lf_model_info info;
static FILE *file;

/* The F32 tensor `name` of the open model, read from its file. */
static float *tensor(const lf_model *m, const char *name) {
    for (size_t i = 0; i < lf_model_tensor_count(m); i++) {
        lf_tensor_info t;
        if (lf_model_tensor_get(m, i, &t) || strcmp(t.name, name) != 0) continue;
        float *data = malloc(t.bytes);
        if (t.type != LF_TYPE_F32 || !data || fseek(file, (long)t.file_offset, SEEK_SET) ||
            fread(data, 1, t.bytes, file) != t.bytes) {
            fprintf(stderr, "engine_hook: %s: needs an F32 tensor it can read\n", name);
            exit(1);
        }
        return data;
    }
    fprintf(stderr, "engine_hook: no tensor %s\n", name);
    exit(1);
}

/* y (rows) = W (rows, cols) x (cols) */
static void matvec(const float *w, const float *x, float *y, uint32_t rows, uint32_t cols) {
    for (uint32_t r = 0; r < rows; r++) {
        float s = 0.0f;
        for (uint32_t c = 0; c < cols; c++) s += w[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rmsnorm(float *o, const float *x, const float *w, uint32_t n) {
    float ss = 0.0f;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float k = 1.0f / sqrtf(ss / (float)n + info.rms_eps);
    for (uint32_t i = 0; i < n; i++) o[i] = x[i] * k * w[i];
}

/* Rotates pairs (2i, 2i+1) of each head's first n_rot dimensions (llama). */
static void rope(float *v, uint32_t n_heads, uint32_t pos) {
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < info.n_rot; i += 2) {
            const float a = (float)pos / powf(info.rope_freq_base, (float)i / (float)info.n_rot);
            float *x = v + h * info.head_dim + i, x0 = x[0], x1 = x[1];
            x[0] = x0 * cosf(a) - x1 * sinf(a);
            x[1] = x0 * sinf(a) + x1 * cosf(a);
        }
}

static int fail(const char *what, lf_status st, const char *detail) {
    fprintf(stderr, "engine_hook: %s: %s (%s)\n", what, detail, lf_strerror(st));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) return fprintf(stderr, "usage: engine_hook FLASH_MODEL [N] [BUDGET]\n"), 2;
    const uint32_t n_predict = argc > 2 ? (uint32_t)atoi(argv[2]) : 200;
    char err[512], name[64], piece[256];
    lf_model_params mp = lf_model_default_params();
    mp.dram_budget = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    lf_model *m;
    lf_status st = lf_model_open(argv[1], &mp, &m, err, sizeof err);
    if (st) return fail("cannot open the model", st, err);
    lf_model_get_info(m, &info);
    lf_ffn *ffn; /* llmflash's FFN: the engine's only use of its compute */
    if ((st = lf_ffn_create(m, NULL, &ffn, err, sizeof err))) return lf_model_close(m), fail("no FFN hook", st, err);
    if (!(file = fopen(argv[1], "rb"))) return perror(argv[1]), 1;

    const uint32_t d = info.n_embd, hd = info.head_dim, q_dim = info.n_head * hd, kv_dim = info.n_head_kv * hd;
    const uint32_t n_ctx = n_predict + 1, group = info.n_head / info.n_head_kv;
    float *embd = tensor(m, "token_embd.weight"), *out_norm = tensor(m, "output_norm.weight");
    float *out = info.tied_output ? embd : tensor(m, "output.weight");
    layer *L = calloc(info.n_layer, sizeof *L);
    for (uint32_t l = 0; l < info.n_layer; l++) {
        const char *parts[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"};
        float **dst[] = {&L[l].attn_norm, &L[l].wq, &L[l].wk, &L[l].wv, &L[l].wo, &L[l].ffn_norm};
        for (int k = 0; k < 6; k++) {
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, parts[k]);
            *dst[k] = tensor(m, name);
        }
    }
    float *x = malloc(d * 4), *xn = malloc(d * 4), *y = malloc(d * 4), *q = malloc(q_dim * 4), *att = malloc(q_dim * 4);
    float *kc = malloc((size_t)info.n_layer * n_ctx * kv_dim * 4), *vc = malloc((size_t)info.n_layer * n_ctx * kv_dim * 4);
    float *score = malloc(n_ctx * 4), *logits = malloc(info.n_vocab * 4);

    lf_token tok = lf_token_bos(m);
    for (uint32_t pos = 0; pos < n_predict && !st; pos++) {
        memcpy(x, embd + (size_t)tok * d, d * 4);
        for (uint32_t l = 0; l < info.n_layer && !st; l++) {
            float *k = kc + ((size_t)l * n_ctx + pos) * kv_dim, *v = vc + ((size_t)l * n_ctx + pos) * kv_dim;
            rmsnorm(xn, x, L[l].attn_norm, d);
            matvec(L[l].wq, xn, q, q_dim, d);
            matvec(L[l].wk, xn, k, kv_dim, d);
            matvec(L[l].wv, xn, v, kv_dim, d);
            rope(q, info.n_head, pos);
            rope(k, info.n_head_kv, pos);
            for (uint32_t h = 0; h < info.n_head; h++) {
                const float *qh = q + h * hd;
                const size_t kv_off = (size_t)l * n_ctx * kv_dim + (h / group) * hd;
                float top = -INFINITY, sum = 0.0f;
                for (uint32_t t = 0; t <= pos; t++) {
                    float s = 0.0f;
                    for (uint32_t i = 0; i < hd; i++) s += qh[i] * kc[kv_off + (size_t)t * kv_dim + i];
                    score[t] = s / sqrtf((float)hd);
                    top = score[t] > top ? score[t] : top;
                }
                for (uint32_t t = 0; t <= pos; t++) sum += score[t] = expf(score[t] - top);
                for (uint32_t i = 0; i < hd; i++) {
                    float a = 0.0f;
                    for (uint32_t t = 0; t <= pos; t++) a += score[t] * vc[kv_off + (size_t)t * kv_dim + i];
                    att[h * hd + i] = a / sum;
                }
            }
            matvec(L[l].wo, att, y, d, q_dim);
            for (uint32_t i = 0; i < d; i++) x[i] += y[i];
            rmsnorm(xn, x, L[l].ffn_norm, d);
            st = lf_ffn_forward(ffn, l, xn, 1, y); /* the streamed, cached FFN */
            for (uint32_t i = 0; i < d; i++) x[i] += y[i];
        }
        if (st) break;
        rmsnorm(xn, x, out_norm, d);
        matvec(out, xn, logits, info.n_vocab, d);
        tok = 0;
        for (lf_token t = 1; t < (lf_token)info.n_vocab; t++) tok = logits[t] > logits[tok] ? t : tok;
        if (tok == lf_token_eos(m)) break;
        const int len = lf_token_to_piece(m, tok, piece, sizeof piece);
        fwrite(piece + (pos == 0 && len > 0 && piece[0] == ' '), 1, len - (pos == 0 && len > 0 && piece[0] == ' '), stdout);
    }
    lf_session_stats stats;
    if (!st && !lf_ffn_get_stats(ffn, &stats))
        fprintf(stderr, "engine_hook: %llu tokens, FFN %.1f KiB/token read from flash, %.1f KiB/token from the cache\n",
                (unsigned long long)stats.tokens, stats.ffn_bytes_read / 1024.0 / (double)stats.tokens,
                stats.ffn_bytes_served / 1024.0 / (double)stats.tokens);
    const int rc = st ? fail("FFN", st, lf_ffn_errmsg(ffn)) : 0;
    fclose(file);
    lf_ffn_destroy(ffn);
    lf_model_close(m);
    for (uint32_t l = 0; l < info.n_layer; l++) {
        float *own[] = {L[l].attn_norm, L[l].wq, L[l].wk, L[l].wv, L[l].wo, L[l].ffn_norm};
        for (int k = 0; k < 6; k++) free(own[k]);
    }
    if (out != embd) free(out);
    float *bufs[] = {embd, out_norm, x, xn, y, q, att, kc, vc, score, logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(L);
    return rc;
}
