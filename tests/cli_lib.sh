# cli_lib.sh - sourced by the CLI test scripts: arguments, a scratch
# directory, TAP-style ok/not ok lines and the checks they share.
#   usage in a script: source "$(dirname "$0")/cli_lib.sh" "$@"
# $1 is the llmflash binary, $2 the shared directory with the real models.
# Where the shared directory is absent the script is skipped (exit 77),
# unless LF_REQUIRE_SHARED is set (CI), which makes that a failure.
set -u
bin=$1
shared=$2
models=$shared/models
if [ ! -f "$models/stories260K.gguf" ]; then
    if [ -n "${LF_REQUIRE_SHARED:-}" ]; then
        echo "not ok - $models is absent but LF_REQUIRE_SHARED is set"
        exit 1
    fi
    echo "skipped: these tests need the real models in $models, which is absent (set LF_SHARED_DIR)"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/tap_lib.sh"
expect_exit() { # name, code, command... : that exit code, and a message on stderr
    local name=$1 code=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    if [ "$rc" -eq "$code" ] && [ -s "$tmp/err" ]; then ok "$name"; else bad "$name (exit $rc, want $code)"; cat "$tmp/err"; fi
}
