/* main.c - the llmflash command: dispatch to subcommands. */
#include "cli.h"

#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "llmflash %s - run language models larger than memory by streaming FFN neurons from flash\n"
            "\n"
            "usage: llmflash COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  run       generate text from a GGUF model\n"
            "  chat      talk with an instruct model, a line of stdin per turn\n"
            "  inspect   describe a GGUF model: hyperparameters, tensors, bytes by class\n"
            "  tokenize  print a text's tokens under a model's (or a vocab-only file's) tokenizer\n"
            "  convert   write a flash file: FFN neurons bundled for streaming\n"
            "  verify    check every checksum of a flash file\n"
            "  calibrate fit a sparsity predictor to a flash model on a text\n"
            "  perplexity  score a text file with a model\n"
            "  synth     write a GGUF of any supported architecture with seeded random weights\n"
            "  bench     measure generation speed against the memory-bandwidth limit\n"
            "  iobench   measure a device's random-read bandwidth for bundle-shaped reads\n"
            "  simulate  predict a recorded run's ms/token on another device, and its bottleneck\n"
            "\n"
            "Run 'llmflash COMMAND --help' for a command's options.\n",
            lf_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("llmflash %s\n", lf_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc, argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc, argv);
    if (strcmp(cmd, "synth") == 0) return cmd_synth(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(cmd, "verify") == 0) return cmd_verify(argc, argv);
    if (strcmp(cmd, "perplexity") == 0) return cmd_perplexity(argc, argv);
    if (strcmp(cmd, "iobench") == 0) return cmd_iobench(argc, argv);
    if (strcmp(cmd, "calibrate") == 0) return cmd_calibrate(argc, argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc, argv);
    if (strcmp(cmd, "simulate") == 0) return cmd_simulate(argc, argv);
    fprintf(stderr, "llmflash: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
