#!/usr/bin/env bash
# abi_test.sh LIBLLMFLASH.so HEADER SYMBOLS.txt - the shared library exports
# exactly the documented API: every symbol in its dynamic table is declared
# LF_API in llmflash.h, and the list equals tests/data/abi_symbols.txt, so a
# symbol that disappears, is renamed or is added without updating the list
# (and the header's manual) fails here. It also has a soname. And in the
# internal library CORE.a, every global lf_ symbol outside the API carries the
# internal prefix lf__, so API and internals differ at a glance.
set -u
lib=$1
header=$2
list=$3
core=${4:-}
source "$(dirname "$0")/tap_lib.sh"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sort >"$tmp/exported"
grep -o '^LF_API[^(]*\blf_[a-z0-9_]*(' "$header" | grep -o 'lf_[a-z0-9_]*($' | tr -d '(' | sort >"$tmp/declared"
if [ -s "$tmp/exported" ]; then ok "the library exports $(wc -l <"$tmp/exported") symbols"; else bad "no exported symbols"; fi
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
if [ -z "$extra" ]; then ok "every exported symbol is declared LF_API in llmflash.h"; else bad "exported but not in llmflash.h: $extra"; fi
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -z "$missing" ]; then ok "every LF_API function is exported"; else bad "declared but not exported: $missing"; fi
if diff -u "$list" "$tmp/exported" >"$tmp/diff"; then
    ok "the exported symbols equal tests/data/abi_symbols.txt"
else
    bad "the exported symbols changed (update tests/data/abi_symbols.txt and the soname if one was removed):"
    cat "$tmp/diff"
fi
if [ -n "$core" ]; then
    nm -g --defined-only "$core" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep '^lf_' | grep -v '^lf__' | sort -u >"$tmp/core"
    unprefixed=$(comm -23 "$tmp/core" "$tmp/declared")
    if [ -z "$unprefixed" ]; then ok "internal symbols shared between files are lf__-prefixed"; else bad "internal but named like API (use lf__): $unprefixed"; fi
fi
# Library messages name parameters, never CLI flags: a string literal in the
# library's sources (src/cli is the CLI's) must not contain --flag.
root=$(dirname "$header")/..
flagged=$(grep -rnE '"[^"]*--[a-z][a-z-]+' "$root/src" "$root/loader" "$root/predictor" --include='*.c' | grep -v '/src/cli/')
if [ -z "$flagged" ]; then ok "no library message names a CLI flag"; else bad "library messages naming CLI flags: $flagged"; fi
if readelf -d "$lib" | grep -q 'SONAME.*libllmflash\.so\.'; then ok "it has a soname: $(readelf -d "$lib" | grep -o 'libllmflash\.so\.[0-9.]*')"; else bad "no soname"; fi
finish
