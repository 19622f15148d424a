#!/bin/sh
# Three udp_node processes on 127.0.0.1: they elect a leader, which
# commits commands; its process is killed (SIGKILL); the survivors elect
# another leader, carry on, and end with the same applied log, longer than
# what the old leader had committed.
#
#     examples/c/udp_cluster.sh path/to/udp_node [raft|paxos|zab]
set -eu
node=$1
protocol=${2:-raft}
dir=$(mktemp -d)
pids=""
trap 'kill $pids 2>/dev/null || true; rm -rf "$dir"' EXIT
# Three ports from the process id, away from the usual ones.
base=$((30000 + ($$ % 10000) * 3))
ports="$base,$((base + 1)),$((base + 2))"
for id in 1 2 3; do
    "$node" --id "$id" --ports "$ports" --protocol "$protocol" --seconds 8 > "$dir/node$id.log" &
    eval "pid$id=$!"
    pids="$pids $!"
done
leader=""
for _ in $(seq 1 50); do
    sleep 0.1
    for id in 1 2 3; do
        if grep -q "^leader $id " "$dir/node$id.log" && grep -q "^committed" "$dir/node$id.log"; then
            leader=$id
        fi
    done
    [ -n "$leader" ] && break
done
[ -n "$leader" ] || { echo "udp_cluster: no leader committed within 5 s" >&2; exit 1; }
eval "victim=\$pid$leader"
committed=$(grep "^committed" "$dir/node$leader.log" | tail -1 | cut -d' ' -f2)
kill -9 "$victim"
echo "$protocol: node $leader led and committed $committed; its process is killed"
survivors=""
for id in 1 2 3; do
    [ "$id" = "$leader" ] && continue
    survivors="$survivors $id"
    eval "wait \$pid$id"
done
new=""
for id in $survivors; do
    grep -q "^leader $id " "$dir/node$id.log" && new=$id
done
[ -n "$new" ] || { echo "udp_cluster: no survivor became the leader" >&2; exit 1; }
set -- $survivors
a=$(grep "^applied" "$dir/node$1.log")
b=$(grep "^applied" "$dir/node$2.log")
count=$(echo "$a" | cut -d' ' -f2)
echo "node $new leads now; nodes $1 and $2 end with: $a"
[ "$a" = "$b" ] || { echo "udp_cluster: the survivors' logs differ: $a / $b" >&2; exit 1; }
[ "$count" -gt "$committed" ] || { echo "udp_cluster: the survivors did not carry on past $committed" >&2; exit 1; }
echo "ok"
