#!/usr/bin/env bash
# A local commons-signal network on the built-in regtest network, on loopback.
#
#   scripts/regtest.sh [start]   build, start five commonsd, and walk a proposal through
#                                the whole system: nodes qualify, a signed proposal is
#                                submitted, nodes signal, the tallies converge, one proposal
#                                is overridden and another becomes ready; the network keeps
#                                running
#   scripts/regtest.sh status    which nodes run, and their proposals
#   scripts/regtest.sh stop      stop every node (SIGTERM, a clean shutdown)
#
# Data lives under ./regtest-network (or $COMMONS_REGTEST_DIR): one directory per node, with
# its log, plus the proposal files and `cli`, a wrapper of commons-cli for node N.
# $COMMONS_REGTEST_NODES sets how many nodes (3 to 16, default 5); $COMMONS_BIN_DIR runs
# prebuilt binaries from that directory instead of building.
set -euo pipefail
called_from=$PWD
cd "$(dirname "$0")/.."

dir=${COMMONS_REGTEST_DIR:-$PWD/regtest-network}
# The data directory as the caller can type it: relative when it lies below where they are.
here=$dir
[[ $dir == "$called_from"/* ]] && here=${dir#"$called_from"/}
count=${COMMONS_REGTEST_NODES:-5}
# Regtest's netgroups are IPv4 /30s, so each node gets an address of its own /30 of
# 127.0.77.0/24: every node counts fully, and the default ports serve them all.
P2P_PORT=28733
RPC_PORT=28732
METRICS_PORT=29733
ip_of() { echo "127.0.77.$((4 * $1 - 3))"; }

# How to call this script again, naming the data directory when it is not the default.
self=scripts/regtest.sh
[[ -n ${COMMONS_REGTEST_DIR:-} ]] && self="COMMONS_REGTEST_DIR=$dir $self"

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() {
  printf 'regtest.sh: %s\n' "$*" >&2
  exit 1
}

[[ $count =~ ^[0-9]+$ ]] && ((count >= 3 && count <= 16)) ||
  die "COMMONS_REGTEST_NODES must be a number from 3 to 16 (regtest needs 3 nodes to qualify), not '$count'"

pid_of() {
  local file="$dir/node$1/commonsd.pid"
  [[ -f $file ]] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

running_nodes() {
  local i list=()
  for ((i = 1; i <= 16; i++)); do
    pid_of "$i" >/dev/null && list+=("$i")
  done
  echo "${list[*]}"
}

stop_network() {
  local i pid stopped=0
  for ((i = 1; i <= 16; i++)); do
    if pid=$(pid_of "$i"); then
      kill -TERM "$pid"
      stopped=$((stopped + 1))
    fi
  done
  for ((i = 1; i <= 16; i++)); do
    if pid=$(pid_of "$i"); then
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    rm -f "$dir/node$i/commonsd.pid"
  done
  say "stopped $stopped node(s); their data stays in $dir (delete it to start afresh)"
}

print_next_steps() {
  cat <<EOF

The network keeps running. Talk to node N (1 to $count) with $here/cli N COMMAND:

  $here/cli 1 getinfo        # peers, epoch, the qualified population
  $here/cli 2 proposals      # every proposal it knows, with its state
  $here/cli 3 tally $over_id
  $here/cli 4 signal $ready_id oppose
  $here/cli 1 uptime         # the node's attested uptime
  curl -s http://$(ip_of 1):$METRICS_PORT/metrics | grep ^commons_

Logs are in $here/node*/commonsd.log. The commands are in docs/CLI.md, running
a node in docs/OPERATING.md, the rules behind the numbers in docs/PROTOCOL.md.

Stop the network with:  $self stop
EOF
}

case "${1:-start}" in
start) ;;
stop)
  stop_network
  exit 0
  ;;
status)
  nodes=$(running_nodes)
  if [[ -z $nodes ]]; then
    say "no regtest node runs from $dir; start them with $self"
    exit 3
  fi
  say "running: node ${nodes// /, node }"
  first=${nodes%% *}
  "$dir/cli" "$first" proposals
  exit 0
  ;;
-h | --help | help)
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
  ;;
*) die "unknown command '$1': use start, status or stop" ;;
esac

if [[ -n $(running_nodes) ]]; then
  die "a network already runs from $dir (nodes $(running_nodes)); see it with '$self status', stop it with '$self stop'"
fi

if [[ -n ${COMMONS_BIN_DIR:-} ]]; then
  bin=$COMMONS_BIN_DIR
else
  step "building (the first build compiles libp2p and RocksDB: 20 to 30 minutes on two cores)"
  COMMONS_SKIP_PROMETHEUS=1 scripts/setup.sh
  source scripts/lib/common.sh
  build_workspace
  bin=$CARGO_TARGET_DIR/debug
fi
for b in commonsd commons-cli; do
  [[ -x $bin/$b ]] || die "no $b in $bin"
done

mkdir -p "$dir"
cat >"$dir/cli" <<EOF
#!/bin/sh
# $dir/cli N COMMAND...: commons-cli talking to node N of this regtest network.
n=\${1:?usage: \$0 NODE COMMAND... (NODE from 1 to $count)}
shift
exec "$bin/commons-cli" --network regtest --datadir "$dir/node\$n" --rpc-url "127.0.77.\$((4 * n - 3)):$RPC_PORT" "\$@"
EOF
chmod +x "$dir/cli"
cli() { "$dir/cli" "$@"; }
offline() { "$bin/commons-cli" --network regtest "$@"; }

# ---------------------------------------------------------------- start the nodes
step "starting $count commonsd on regtest, data in $dir"
bootstrap=()
for ((i = 1; i <= count; i++)); do
  ip=$(ip_of "$i")
  mkdir -p "$dir/node$i"
  # Regtest qualifies nodes by its three well-known measurers: nodes 1 to 3 run as them.
  if ((i <= 3)); then
    mkdir -p -m 700 "$dir/node$i/regtest"
    [[ -f $dir/node$i/regtest/node.key ]] ||
      offline key regtest-measurer "$((i - 1))" --out "$dir/node$i/regtest/node.key" >/dev/null
  fi
  # setsid: the nodes outlive this script and the terminal's Ctrl-C.
  RUST_LOG=${RUST_LOG:-info} setsid "$bin/commonsd" --network regtest --datadir "$dir/node$i" \
    --listen "/ip4/$ip/tcp/$P2P_PORT" --rpc-bind "$ip:$RPC_PORT" --metrics-bind "$ip:$METRICS_PORT" \
    "${bootstrap[@]}" </dev/null >>"$dir/node$i/commonsd.log" 2>&1 &
  echo $! >"$dir/node$i/commonsd.pid"
  if ! info=$(cli "$i" --rpc-wait 30 --json getinfo 2>&1); then
    tail -n 5 "$dir/node$i/commonsd.log" >&2 || true
    stop_network >&2
    die "node $i did not come up (log: $dir/node$i/commonsd.log): $info"
  fi
  role=user
  if ((i <= 3)); then
    # Every node visits every measurer; dialing them at start saves the kad lookup.
    role="measurer $((i - 1))"
    peer_id=$(sed -n 's/^ *"peer_id": *"\([^"]*\)".*/\1/p' <<<"$info")
    [[ -n $peer_id ]] || die "node $i reported no peer id: $info"
    bootstrap+=(--bootstrap "/ip4/$ip/tcp/$P2P_PORT/p2p/$peer_id")
  fi
  say "node $i  $ip  p2p :$P2P_PORT  rpc :$RPC_PORT  metrics :$METRICS_PORT  pid $(cat "$dir/node$i/commonsd.pid")  $role"
done

# Waits up to $1 seconds for `check` (a function name) to succeed, printing its output as
# it changes.
wait_for() {
  local limit=$1 check=$2 last="" now
  for ((t = 0; t < limit * 2; t++)); do
    if now=$($check); then
      [[ -n $now && $now != "$last" ]] && say "  $now"
      return 0
    fi
    if [[ -n $now && $now != "$last" ]]; then
      say "  $now"
      last=$now
    fi
    sleep 0.5
  done
  return 1
}

# ---------------------------------------------------------------- qualify
step "waiting for the nodes to qualify"
say "Regtest counts a node once 2 of its 3 measurers (nodes 1 to 3) saw it online for 3 epochs"
say "(2 s each) at its address; every node visits every measurer, measurers included."
# Every node must count all of them: each learns the others' standing from their presences.
all_qualified() {
  local i agree=0 least=$count seen
  for ((i = 1; i <= count; i++)); do
    seen=$(cli "$i" --json getinfo | sed -n 's/^ *"qualified_nodes": *\([0-9]*\).*/\1/p')
    ((${seen:-0} < least)) && least=${seen:-0}
    ((${seen:-0} == count)) && agree=$((agree + 1))
  done
  echo "$agree of $count nodes count all $count as qualified (the fewest any node counts: $least)"
  ((agree == count))
}
wait_for 120 all_qualified || die "the nodes did not qualify within 2 minutes; see $dir/node*/commonsd.log"
cli 1 getinfo | sed -n '/^peers/p; /^qualified/p'

# ---------------------------------------------------------------- proposals
# Maintainers sign with the well-known regtest keys (everyone knows them: regtest only).
keys=$dir/maintainer-keys
mkdir -p "$keys"
chmod 700 "$keys"
for m in 0 1 2; do
  [[ -f $keys/$m.key ]] || offline key regtest-maintainer "$m" --out "$keys/$m.key" >/dev/null
done

# make_proposal NAME TITLE LOCK_SECS: writes $dir/NAME.proposal signed by 3 maintainers (tier
# 1 needs 3 of 5), prints its id.
make_proposal() {
  local file=$dir/$1.proposal
  rm -f "$file"
  offline proposal create --tier 1 --title "$2" --reference "https://example.invalid/commons/pull/$RANDOM" \
    --lock-end "+$3" --out "$file" >/dev/null
  for m in 0 1 2; do
    offline proposal sign "$file" --key "$keys/$m.key" >/dev/null
  done
  cli 1 proposal submit "$file" | sed -n 's/.*\([0-9a-f]\{64\}\).*/\1/p' | head -n 1
}

step "maintainers submit two tier-1 proposals (3 of 5 signatures each) to node 1"
over_id=$(make_proposal override-me "Default peer count to 4" 120)
ready_id=$(make_proposal ready-me "Mempool limit to 500 MB" 40)
[[ -n $over_id && -n $ready_id ]] || die "proposal submission failed; see $dir/node1/commonsd.log"
say "A: $over_id  (lock 120 s)"
say "B: $ready_id  (lock 40 s)"
known_everywhere() {
  local i known=0 held
  for ((i = 1; i <= count; i++)); do
    held=$(cli "$i" proposals)
    [[ $held == *"$ready_id"* && $held == *"$over_id"* ]] && known=$((known + 1))
  done
  echo "$known of $count nodes hold both proposals (gossip)"
  ((known == count))
}
wait_for 30 known_everywhere || die "the proposals did not reach every node"

# ---------------------------------------------------------------- signals
step "nodes signal: 2 of $count override A (tier 1 needs 25% of weight and of nodes); the rest support B"
cli 1 signal "$over_id" override
cli 2 signal "$over_id" override
for ((i = 3; i <= count; i++)); do
  cli "$i" signal "$ready_id" support
done

state_on_all() { # state_on_all ID STATE: every node reports STATE for ID
  local i agree=0 state
  for ((i = 1; i <= count; i++)); do
    state=$(cli "$i" --json tally "$1" | sed -n 's/^ *"state": *"\([a-z_-]*\)".*/\1/p')
    [[ $state == "$2" ]] && agree=$((agree + 1))
  done
  echo "$agree of $count nodes see proposal ${1:0:12}... $2"
  ((agree == count))
}
a_overridden() { state_on_all "$over_id" overridden; }
b_ready() { state_on_all "$ready_id" ready; }

step "tallies converge: A is overridden on every node"
wait_for 60 a_overridden || die "proposal A was not overridden everywhere; see $dir/node*/commonsd.log"
cli 3 tally "$over_id"

step "B stays locked until its lock ends, then every node reports it ready"
cli 4 tally "$ready_id" | head -n 1
wait_for 90 b_ready || die "proposal B did not become ready everywhere"
cli 5 proposals

print_next_steps
