#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it:
#   1. dependencies (apt, as root);
#   2. a -Werror build with every unit and end-to-end test (and the cgroup test);
#   3. an ASan+UBSan build running them again;
#   4. ThreadSanitizer on the loader stress test and on two sessions sharing a model;
#   5. libFuzzer (clang, ASan+UBSan) on the GGUF reader, whole models and flash files, 60 s each.
# Tests that need the real models in ../shared (or LF_SHARED_DIR) skip where
# it is absent and say so; with LF_REQUIRE_SHARED=1 (CI) a missing ../shared
# fails instead. Ends with "N passed, N failed, N skipped" and exits non-zero
# on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
shared=${LF_SHARED_DIR:-$root/../shared}
export LF_SHARED_DIR=$shared
fuzz_secs=${LF_FUZZ_SECONDS:-60}
passed=0
failed=0
skipped=0
skips=()
count() { # parses meson's summary of the last run
    local log=$1
    local ok fail skip
    ok=$(grep -E '^Ok: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
    fail=$(grep -E '^(Fail|Timeout): +[0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
    skip=$(grep -E '^Skipped: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0}))
    skipped=$((skipped + ${skip:-0}))
    while read -r line; do skips+=("$line"); done < <(grep -E ' SKIP ' "$log" | sed 's/^ *//' || true)
}
step() { # name, command... : one pass or fail
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); status=1; fi
}
status=0
if [ ! -f "$shared/models/stories260K.gguf" ]; then
    if [ -n "${LF_REQUIRE_SHARED:-}" ]; then
        echo "test.sh: $shared is absent, and LF_REQUIRE_SHARED is set: the tests on real models cannot be skipped here"
        exit 1
    fi
    echo "test.sh: $shared is absent: the tests on the real models will be skipped"
fi
if ! [ -w /sys/fs/cgroup/memory ]; then echo "test.sh: cgroup v1 memory controller not writable: the cgroup test will be skipped"; fi

echo "== release build (-Werror) and all tests"
rm -rf build-test && meson setup build-test -Dwerror=true --buildtype=debugoptimized >/dev/null
ninja -C build-test
meson test -C build-test --print-errorlogs --num-processes 2 | tee build-test/summary.txt || status=1
count build-test/summary.txt

echo "== ASan + UBSan build, unit and end-to-end tests (not the cgroup one: sanitizer shadow memory is not in any budget)"
# -O2: the sanitizers check the same accesses, and the calibration test, the
# longest, ran 14 min under ASan at -O0
rm -rf build-asan && meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized >/dev/null
ninja -C build-asan
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 --no-suite cgroup |
    tee build-asan/summary.txt || status=1
count build-asan/summary.txt

echo "== ThreadSanitizer: loader stress, and two sessions sharing one model and budget"
rm -rf build-tsan && meson setup build-tsan -Dwerror=true -Db_sanitize=thread --buildtype=debug >/dev/null
ninja -C build-tsan tests/stress_loader tests/multi_session
step "stress_loader under TSan" env TSAN_OPTIONS=halt_on_error=1 ./build-tsan/tests/stress_loader
if [ -f "$shared/models/stories260K.gguf" ]; then
    tsan_model=$(mktemp /tmp/lf_tsan_XXXXXX.gguf)
    ./build-test/llmflash convert "$shared/models/stories260K.gguf" "$tsan_model" --force >/dev/null 2>&1
    # the pread back-end: TSan cannot see the ordering io_uring's rings give (see multi_session.c)
    step "two sessions under TSan" env LLMFLASH_IO=pread TSAN_OPTIONS=halt_on_error=1 \
        ./build-tsan/tests/multi_session "$tsan_model" $((8 << 20)) 2 24
    step "two sessions on one shared thread pool under TSan" env LLMFLASH_IO=pread TSAN_OPTIONS=halt_on_error=1 \
        ./build-tsan/tests/multi_session "$tsan_model" $((8 << 20)) 2 24 shared-pool
    rm -f "$tsan_model"
else
    skipped=$((skipped + 1)); skips+=("multi_session under TSan: needs $shared")
fi

echo "== libFuzzer (clang, ASan + UBSan): GGUF reader, whole models, flash files; $fuzz_secs s each"
rm -rf build-fuzz
step "fuzzing" bash tests/fuzz/run_fuzz.sh "$fuzz_secs" build-test/llmflash

if [ ${#skips[@]} -gt 0 ]; then
    echo "skipped, with the reasons above:"
    printf '  %s\n' "${skips[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
