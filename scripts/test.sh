#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it: dependencies, a -Werror
# build with every unit and end-to-end test, an ASan+UBSan build running the
# unit tests again, and 60 s of libFuzzer on the GGUF reader.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
passed=0
failed=0
count() { # parses meson's summary of the last run
    local log=$1
    local ok fail
    ok=$(grep -E '^Ok: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
    fail=$(grep -E '^Fail: +[0-9]+' "$log" | awk '{print $2}' | tail -1)
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0}))
}
status=0

echo "== release build (-Werror) and all tests"
rm -rf build-test && meson setup build-test -Dwerror=true --buildtype=debugoptimized >/dev/null
ninja -C build-test
meson test -C build-test --print-errorlogs --num-processes 2 | tee build-test/summary.txt || status=1
count build-test/summary.txt

echo "== ASan + UBSan build, unit and end-to-end tests (not the cgroup one: sanitizer shadow memory is not in any budget)"
rm -rf build-asan && meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug >/dev/null
ninja -C build-asan
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 4 --no-suite cgroup |
    tee build-asan/summary.txt || status=1
count build-asan/summary.txt

echo "== ThreadSanitizer: loader stress, and two sessions sharing one model and budget"
rm -rf build-tsan && meson setup build-tsan -Dwerror=true -Db_sanitize=thread --buildtype=debug >/dev/null
ninja -C build-tsan tests/stress_loader tests/multi_session
if TSAN_OPTIONS=halt_on_error=1 ./build-tsan/tests/stress_loader; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
# pread back-end: TSan cannot see the ordering io_uring's rings provide (see multi_session.c)
tsan_model=$(mktemp /tmp/lf_tsan_XXXXXX.gguf)
./build-test/llmflash convert "$shared/models/stories260K.gguf" "$tsan_model" --force >/dev/null 2>&1
if LLMFLASH_IO=pread TSAN_OPTIONS=halt_on_error=1 ./build-tsan/tests/multi_session "$tsan_model" $((8 << 20)) 2 24; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); status=1
fi
rm -f "$tsan_model"

echo "== libFuzzer on the GGUF reader, 60 s"
if bash tests/fuzz/run_fuzz.sh 60 build-test/llmflash; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

echo "$passed passed, $failed failed"
exit $status
