#!/usr/bin/env bash
# readme_snippet_test.sh SOURCE_ROOT BUILD_ROOT SHARED_DIR SANITIZE - the README's library
# example compiles as written (-Wall -Wextra -Werror, public header only, linked
# against libllmflash) and prints the golden continuation of its prompt.
set -u
src=$1
build=$2
shared=$3
sanitize=${4:-none}
san=()
[ "$sanitize" != none ] && san=(-fsanitize="$sanitize")
# the libraries come from the pkg-config file meson generates, so it is tested too
deps=$(PKG_CONFIG_PATH="$build/meson-private" pkg-config --libs llmflash)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n '/<!-- snippet:begin -->/,/<!-- snippet:end -->/p' "$src/README.md" | sed '1,2d;$d' | sed '$d' >"$tmp/snippet.c"
if ! grep -q "int main" "$tmp/snippet.c"; then echo "not ok - no snippet found in README.md"; echo "0 passed, 1 failed"; exit 1; fi
pass=0
fail=0
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Werror "${san[@]}" -I"$src/include" "$tmp/snippet.c" -L"$build" $deps \
    -Wl,-rpath,"$build" -lpthread -lm -o "$tmp/snippet" 2>"$tmp/cc.err"; then
    pass=$((pass + 1)); echo "ok - the README's example compiles as written"
else
    fail=$((fail + 1)); echo "not ok - the README's example does not compile:"; cat "$tmp/cc.err"
fi
if [ -f "$shared/models/stories260K.gguf" ] && [ -x "$tmp/snippet" ]; then
    "$tmp/snippet" "$shared/models/stories260K.gguf" >"$tmp/out.txt" 2>"$tmp/err.txt"
    rc=$?
    # the golden text is the greedy run from BOS and begins with the prompt,
    # so prompt + output is a prefix of it
    { printf 'Once upon a time'; cat "$tmp/out.txt"; } >"$tmp/full.txt"
    if [ "$rc" -eq 0 ] && [ -s "$tmp/out.txt" ] &&
        head -c "$(stat -c %s "$tmp/full.txt")" "$shared/models/stories260K.greedy200.txt" | cmp -s - "$tmp/full.txt"; then
        pass=$((pass + 1)); echo "ok - it runs on stories260K and prints the golden continuation"
    else
        fail=$((fail + 1)); echo "not ok - it failed (exit $rc)"; cat "$tmp/err.txt"
    fi
    "$tmp/snippet" "$tmp/missing.gguf" >/dev/null 2>"$tmp/err.txt"
    if [ $? -eq 1 ] && grep -q "LF_E_IO" "$tmp/err.txt"; then
        pass=$((pass + 1)); echo "ok - and checks its return codes (a missing model is an error, exit 1)"
    else
        fail=$((fail + 1)); echo "not ok - a missing model was not reported"
    fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
