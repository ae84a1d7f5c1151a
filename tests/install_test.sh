#!/usr/bin/env bash
# install_test.sh SOURCE_ROOT BUILD_ROOT SHARED_DIR [SANITIZE] - `meson install` (into a
# scratch DESTDIR) installs the shared and static library, the header,
# llmflash.pc and the CLI; the generate example then builds against the
# installed tree with nothing but `pkg-config --cflags --libs llmflash`
# (and --static for the static library), and both builds print the golden
# text of stories260K.
set -u
src=$1
build=$2
shared=$3
sanitize=${4:-none}
san=()
[ "$sanitize" != none ] && san=(-fsanitize="$sanitize") # a sanitized library needs its runtime in the program
source "$(dirname "$0")/tap_lib.sh"
dest=$tmp/root
if meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >"$tmp/install.log" 2>&1; then
    ok "meson install into a DESTDIR"
else
    bad "meson install failed:"; cat "$tmp/install.log"
fi
prefix=$(sed -n 's/^prefix=//p' "$build/meson-private/llmflash.pc")
libdir=$(sed -n 's/^libdir=\${prefix}//p' "$build/meson-private/llmflash.pc")
root=$dest$prefix
for f in "include/llmflash.h" "${libdir#/}/libllmflash.a" "${libdir#/}/pkgconfig/llmflash.pc" "bin/llmflash"; do
    if [ -f "$root/$f" ]; then ok "installs $f"; else bad "does not install $f"; fi
done
so=$(cd "$root/${libdir#/}" 2>/dev/null && ls libllmflash.so.* 2>/dev/null | head -1)
if [ -n "$so" ] && [ -L "$root/${libdir#/}/libllmflash.so" ]; then ok "installs the shared library $so and its link"; else bad "no shared library"; fi
if cmp -s "$src/include/llmflash.h" "$root/include/llmflash.h"; then ok "the installed header is the source's"; else bad "the installed header differs"; fi
# pkg-config against the installed tree only: the sysroot prefixes its paths
export PKG_CONFIG_PATH=$root/${libdir#/}/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs llmflash 2>"$tmp/pc.err")
if [ $? -eq 0 ]; then ok "pkg-config --cflags --libs llmflash: $flags"; else bad "pkg-config failed: $(cat "$tmp/pc.err")"; fi
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$src/examples/generate.c" $flags -lm -o "$tmp/generate" 2>"$tmp/cc.err"; then
    ok "examples/generate.c builds against the installed shared library"
else
    bad "it does not build:"; cat "$tmp/cc.err"
fi
# the static library: the same example with pkg-config --static, linked statically against llmflash
static_flags=$(pkg-config --static --libs llmflash 2>"$tmp/pc.err" | sed 's/-lllmflash/-l:libllmflash.a/')
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Werror "${san[@]}" $(pkg-config --cflags llmflash) "$src/examples/generate.c" $static_flags -lm \
    -o "$tmp/generate_static" 2>"$tmp/cc.err"; then
    ok "and against the static library (pkg-config --static)"
else
    bad "the static build fails:"; cat "$tmp/cc.err" "$tmp/pc.err"
fi
if [ -f "$shared/models/stories260K.gguf" ]; then
    golden=$shared/models/stories260K.greedy200.txt
    if LD_LIBRARY_PATH=$root/${libdir#/} "$tmp/generate" "$shared/models/stories260K.gguf" >"$tmp/out.txt" 2>"$tmp/err.txt" &&
        cmp -s "$tmp/out.txt" "$golden"; then
        ok "the installed-tree build prints stories260K's golden text"
    else
        bad "the installed-tree build's text differs: $(head -c 300 "$tmp/err.txt")"
    fi
    if ldd "$tmp/generate_static" | grep -q libllmflash; then bad "the static build still needs libllmflash.so"
    elif "$tmp/generate_static" "$shared/models/stories260K.gguf" >"$tmp/out2.txt" 2>"$tmp/err.txt" && cmp -s "$tmp/out2.txt" "$golden"; then
        ok "the static build (no libllmflash.so) prints it too"
    else
        bad "the static build's text differs: $(head -c 300 "$tmp/err.txt")"
    fi
    if LD_LIBRARY_PATH=$root/${libdir#/} "$root/bin/llmflash" run -m "$shared/models/stories260K.gguf" -n 200 --temp 0 \
        >"$tmp/cli.txt" 2>"$tmp/err.txt" && cmp -s "$tmp/cli.txt" "$golden"; then
        ok "the installed CLI runs on the installed library"
    else
        bad "the installed CLI failed: $(head -c 300 "$tmp/err.txt")"
    fi
else
    echo "# skipped the runs: $shared/models is absent"
fi
finish
