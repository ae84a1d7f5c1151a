/* cmd_convert.c - `llmflash convert` and `llmflash verify`. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int cmd_convert(int argc, char **argv) {
    const char *btype = "keep", *compress = "none", *align = "page", *activation = "auto";
    int group = 0;
    bool force = false;
    cli_opt opts[] = {
        {"--bundle-type", NULL, CLI_STR, &btype, "keep, f16, q8_0, q4_0 or q4_k (default keep: the source FFN type)", false},
        {"--compress", NULL, CLI_STR, &compress, "none, lz4, zstd or zstd:LEVEL (default none)", false},
        {"--group", NULL, CLI_INT, &group, "neurons per compressed group (default 16)", false},
        {"--align", NULL, CLI_STR, &align, "page: pad uncompressed records to whole pages; none: pack them", false},
        {"--activation", NULL, CLI_STR, &activation, "FFN activation to record: auto (the source's), silu, relu, relu_plain",
         false},
        {"--force", "-f", CLI_FLAG, &force, "overwrite an existing output file (regular files only)", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[2];
    size_t n_pos;
    bool help;
    if (!cli_parse("convert", argc, argv, 2, opts, n_opts, pos, 2, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash convert IN.gguf OUT.gguf [--bundle-type T] [--compress C] [--group N] [--force]\n\n"
               "Writes a flash file: resident tensors as in IN, each layer's FFN as neuron bundles\n"
               "(gate row, up row, down column) that one read brings in, with checksums.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (n_pos != 2) {
        fprintf(stderr, "llmflash convert: expected IN.gguf and OUT.gguf (see llmflash convert --help)\n");
        return CLI_EXIT_USAGE;
    }
    lf_convert_params p = lf_convert_default_params();
    if (strcasecmp(btype, "keep") == 0) {
        p.bundle_type = LF_BUNDLE_KEEP;
    } else {
        lf_type t;
        if (lf_type_from_name(btype, &t) != LF_OK ||
            !(t == LF_TYPE_F16 || t == LF_TYPE_Q8_0 || t == LF_TYPE_Q4_0 || t == LF_TYPE_Q4_K || t == LF_TYPE_F32)) {
            fprintf(stderr, "llmflash convert: --bundle-type must be keep, f32, f16, q8_0, q4_0 or q4_k\n");
            return CLI_EXIT_USAGE;
        }
        p.bundle_type = (int)t;
    }
    if (lf_compression_from_name(compress, &p.compression, &p.compression_level) != LF_OK) {
        fprintf(stderr, "llmflash convert: --compress must be none, lz4, zstd or zstd:LEVEL (1-19)\n");
        return CLI_EXIT_USAGE;
    }
    if (group < 0 || group > 65536) {
        fprintf(stderr, "llmflash convert: --group must be between 1 and 65536\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(align, "page") != 0 && strcmp(align, "none") != 0) {
        fprintf(stderr, "llmflash convert: --align must be page or none\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(activation, "auto") == 0) p.activation = LF_ACT_FROM_FILE;
    else if (strcmp(activation, "silu") == 0) p.activation = LF_ACT_SILU_GATED;
    else if (strcmp(activation, "relu") == 0) p.activation = LF_ACT_RELU_GATED;
    else if (strcmp(activation, "relu_plain") == 0) p.activation = LF_ACT_RELU;
    else {
        fprintf(stderr, "llmflash convert: --activation must be auto, silu, relu or relu_plain\n");
        return CLI_EXIT_USAGE;
    }
    p.group = (uint32_t)group;
    p.packed = strcmp(align, "none") == 0;
    p.force = force;
    cli_progress pr;
    cli_progress_init(&pr, "convert", false);
    p.progress = cli_progress_update;
    p.progress_user = &pr;
    char err[512];
    lf_convert_stats st;
    const lf_status rc = lf_convert(pos[0], pos[1], &p, &st, err, sizeof err);
    if (rc) {
        fprintf(stderr, "llmflash convert: %s (%s)%s\n", err, lf_strerror(rc), cli_hint(rc));
        return rc == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    char in_b[32], out_b[32], rss[32];
    cli_format_bytes(st.in_bytes, in_b, sizeof in_b);
    cli_format_bytes(st.out_bytes, out_b, sizeof out_b);
    cli_format_bytes(st.peak_rss_bytes, rss, sizeof rss);
    fprintf(stderr, "wrote %s: %s -> %s in %.2f s (%.1f MB/s of input), peak RSS %s\n", pos[1], in_b, out_b, st.seconds,
            st.seconds > 0 ? (double)st.in_bytes / st.seconds / 1e6 : 0.0, rss);
    fprintf(stderr, "FFN bundles: %llu bytes of records stored in %llu bytes (ratio %.3f, %s)\n",
            (unsigned long long)st.ffn_raw_bytes, (unsigned long long)st.ffn_stored_bytes,
            st.ffn_raw_bytes ? (double)st.ffn_stored_bytes / (double)st.ffn_raw_bytes : 0.0, compress);
    return CLI_EXIT_OK;
}

int cmd_verify(int argc, char **argv) {
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("verify", argc, argv, 2, NULL, 0, pos, 1, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash verify FILE.gguf\n\nChecks a flash file's header, tensors and every bundle group.\n");
        return CLI_EXIT_OK;
    }
    if (n_pos != 1) {
        fprintf(stderr, "llmflash verify: expected one flash file\n");
        return CLI_EXIT_USAGE;
    }
    char err[512];
    uint64_t groups = 0;
    const lf_status rc = lf_verify(pos[0], &groups, err, sizeof err);
    if (rc) {
        fprintf(stderr, "llmflash verify: %s: %s (%s)%s\n", pos[0], err, lf_strerror(rc), cli_hint(rc));
        return rc == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    printf("%s: OK (header, tensors and %llu bundle groups)\n", pos[0], (unsigned long long)groups);
    return CLI_EXIT_OK;
}
