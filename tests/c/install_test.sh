#!/bin/sh
# `make install` into an empty prefix, then what a C programmer does with
# it: the shared library has its soname and exports only consenso_
# symbols, and examples/c/raft_cluster.c builds with the pkg-config line
# alone and runs to completion. Run by `make install-test`.
set -eu
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make --no-print-directory install PREFIX="$prefix" > /dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
minor=$(echo "$version" | cut -d. -f2)
# The soname's version: MAJOR from 1.0 on, 0.MINOR before.
if [ "$major" = 0 ]; then abi="0.$minor"; else abi=$major; fi
lib="$prefix/lib"
for f in "$lib/libconsenso.so.$version" "$lib/libconsenso.so.$abi" "$lib/libconsenso.so" \
         "$lib/libconsenso.a" "$prefix/include/consenso.h" "$lib/pkgconfig/consenso.pc"; do
    [ -e "$f" ] || { echo "install_test: $f is missing" >&2; exit 1; }
done
[ "$(readlink "$lib/libconsenso.so.$abi")" = "libconsenso.so.$version" ]
[ "$(readlink "$lib/libconsenso.so")" = "libconsenso.so.$abi" ]
readelf -d "$lib/libconsenso.so.$version" | grep -q "SONAME.*\[libconsenso.so.$abi\]" || {
    echo "install_test: no soname libconsenso.so.$abi" >&2; exit 1; }
others=$(nm -D --defined-only "$lib/libconsenso.so.$version" | awk '{print $3}' | grep -v '^consenso_' || true)
if [ -n "$others" ]; then
    echo "install_test: symbols exported beside consenso_*:" >&2
    echo "$others" >&2
    exit 1
fi
exported=$(nm -D --defined-only "$lib/libconsenso.so.$version" | grep -c ' consenso_')
export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion consenso)" = "$version" ]
cc examples/c/raft_cluster.c $(pkg-config --cflags --libs consenso) -o "$prefix/raft_cluster"
LD_LIBRARY_PATH="$lib" "$prefix/raft_cluster" --protocol raft > "$prefix/out.txt"
tail -1 "$prefix/out.txt" | grep -qx ok
# The static library alone serves too.
cc examples/c/raft_cluster.c $(pkg-config --cflags consenso) "$lib/libconsenso.a" \
    $(pkg-config --static --libs-only-l consenso | sed 's/-lconsenso//') -o "$prefix/raft_cluster_static"
"$prefix/raft_cluster_static" --protocol zab | tail -1 | grep -qx ok
echo "install_test: libconsenso.so.$version (soname libconsenso.so.$abi, $exported consenso_ symbols, nothing else), header, static library and consenso.pc installed; raft_cluster built with pkg-config and ran"
