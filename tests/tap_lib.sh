# tap_lib.sh - sourced by the shell tests: a scratch directory removed on
# exit, TAP-style ok/not ok lines, check, and the closing count.
#   usage: source "$(dirname "$0")/tap_lib.sh"; ...; finish
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
check() { # name, command... : passes when the command succeeds
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
