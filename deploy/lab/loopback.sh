#!/usr/bin/env bash
# A throwaway three-director Troop pool on 127.0.0.1 (deploy/examples/loopback): start it, apply
# the seed's table through a follower, show every director's table, kill the leader, show the
# pool carrying on, bring the old leader back as a follower, then stop everything.
# Usage: deploy/lab/loopback.sh path/to/troop
set -euo pipefail
troop=$(realpath "${1:-bin/troop}")
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/troop-lab.XXXXXX)
declare -A pid api=([d1]=http://127.0.0.1:9710 [d2]=http://127.0.0.1:9720 [d3]=http://127.0.0.1:9730)

cleanup() {
	for n in "${!pid[@]}"; do kill "${pid[$n]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

start() {
	local n=$1
	"$troop" agent -config "$here/deploy/examples/loopback/$n.hcl" -data-dir "$work/$n" >>"$work/$n.log" 2>&1 &
	pid[$n]=$!
}

leader() {
	"$troop" status -address "${api[$1]}" -json | sed -n 's/.*"leader_id": *"\([^"]*\)".*/\1/p' | head -1
}

wait_leader() {
	local from=$1
	for _ in $(seq 100); do
		l=$(leader "$from" 2>/dev/null || true)
		[ -n "$l" ] && { echo "$l"; return; }
		sleep 0.1
	done
	echo "no leader after 10 s; logs in $work" >&2
	tail -n 20 "$work"/*.log >&2
	exit 1
}

echo "== starting directors d1 d2 d3 on 127.0.0.1 (logs in $work)"
for n in d1 d2 d3; do start $n; done
l=$(wait_leader d1)
echo "leader: $l"
follower=d1; [ "$l" = d1 ] && follower=d2

echo; echo "== applying the seed's table through follower $follower"
"$troop" apply -address "${api[$follower]}" -f "$here/deploy/examples/seed-table.hcl"

for n in d1 d2 d3; do
	echo; echo "== troop status on $n"
	"$troop" status -address "${api[$n]}" -consistent
done

echo; echo "== killing the leader $l (SIGKILL)"
kill -9 "${pid[$l]}"; wait "${pid[$l]}" 2>/dev/null || true; unset "pid[$l]"
survivor=d1; [ "$l" = d1 ] && survivor=d2
start_ns=$(date +%s%N)
for _ in $(seq 100); do
	nl=$(leader "$survivor" 2>/dev/null || true)
	[ -n "$nl" ] && [ "$nl" != "$l" ] && break
	sleep 0.05
done
echo "new leader: $nl after $(( ($(date +%s%N) - start_ns) / 1000000 )) ms (as seen by polling $survivor)"
"$troop" real drain -address "${api[$survivor]}" web 192.0.2.21:80
"$troop" status -address "${api[$survivor]}" -consistent

echo; echo "== restarting $l: it rejoins as a follower with the full table"
start "$l"
sleep 2
"$troop" status -address "${api[$l]}" -consistent
"$troop" operator raft list-peers -address "${api[$l]}"
echo; echo "== lab done; stopping the pool"
