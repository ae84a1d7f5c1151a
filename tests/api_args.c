/* api_args.c - runs the calls tests/gen_api_args_test.py generated from
 * llmflash.h (every public function with NULL and invalid arguments) on
 * handles of a small synthetic flash model. Public API only. Exit 0 when
 * every call returned its documented error and none crashed. */
#include "llmflash.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

lf_model *model;
lf_session *session;
lf_sampler *sampler;
lf_vocab *vocab;
lf_trace *trace;
lf_gguf_file *gfile;
lf_threadpool *pool;
lf_ffn *ffn;

int api_args_calls(void);

static int check(const char *what, lf_status st, const char *err) {
    if (st) fprintf(stderr, "api_args: %s: %s (%s)\n", what, err, lf_strerror(st));
    return st != LF_OK;
}

int main(void) {
    char src[64], flash[64], err[512];
    snprintf(src, sizeof src, "/tmp/lf_api_args_%d.gguf", (int)getpid());
    snprintf(flash, sizeof flash, "/tmp/lf_api_args_%d.flash.gguf", (int)getpid());
    lf_synth_params sp = lf_synth_default_params();
    lf_convert_params cp = lf_convert_default_params();
    int rc = check("preset", lf_synth_shape_preset("tiny", &sp), "tiny") ||
             check("synth", lf_synth_write(src, &sp, err, sizeof err), err) ||
             check("convert", lf_convert(src, flash, &cp, NULL, err, sizeof err), err) ||
             check("model", lf_model_open(flash, NULL, &model, err, sizeof err), err) ||
             check("session", lf_session_create(model, NULL, &session, err, sizeof err), err) ||
             check("sampler", lf_sampler_create(NULL, &sampler), "") ||
             check("vocab", lf_vocab_open(src, &vocab, err, sizeof err), err) ||
             check("trace", lf_trace_create(&trace), "") ||
             check("gguf file", lf_gguf_file_open(src, &gfile, err, sizeof err), err) ||
             check("pool", lf_threadpool_create(1, &pool), "") ||
             check("ffn", lf_ffn_create(model, NULL, &ffn, err, sizeof err), err);
    if (!rc) rc = api_args_calls() != 0;
    lf_ffn_destroy(ffn);
    lf_threadpool_destroy(pool);
    lf_gguf_file_close(gfile);
    lf_trace_destroy(trace);
    lf_vocab_close(vocab);
    lf_sampler_destroy(sampler);
    lf_session_destroy(session);
    lf_model_close(model);
    unlink(src);
    unlink(flash);
    return rc;
}
