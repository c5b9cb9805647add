#!/usr/bin/env bash
# Throughput of one `mp` transfer under random packet loss, between two network namespaces.
#
#   bench/loss.sh [MP_BINARY] [SIZE_MIB] [RUNS] [LOSS...]     (as root)
#
# Makes namespaces mpl-s-PID (sender and `mp signal`) and mpl-r-PID (receiver) joined by a veth
# (MTU 1500, 10.77.0.1 <-> 10.77.0.2, addresses that exist only inside them), and drops each
# packet entering the receiver's namespace with probability LOSS (iptables statistic; there is no
# netem here). GRO/GSO are turned off on the veth when ethtool is present, so a "drop" is one
# packet rather than a coalesced super-packet (OFFLOADS=keep leaves them on: then a drop takes
# a whole GSO burst). Prints one line per run: the whole receive (pairing, ICE, DTLS, transfer)
# and the data phase alone (first byte to finished, from the receiver's --json events).
# Every transfer is bounded by `timeout`; the namespaces are removed on exit.
set -euo pipefail
MP=${1:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/mp"}
SIZE_MIB=${2:-50}
RUNS=${3:-3}
shift 3 2>/dev/null || shift $#
LOSSES=("$@")
[[ ${#LOSSES[@]} -gt 0 ]] || LOSSES=(0 0.001 0.01 0.05)
LIMIT=${LIMIT:-180}

[[ $EUID -eq 0 ]] || { echo "loss.sh: needs root" >&2; exit 1; }
S=mpl-s-$$
R=mpl-r-$$
TMP=$(mktemp -d)
cleanup() {
    for ns in "$S" "$R"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$S"
ip netns add "$R"
ip link add veth-s netns "$S" type veth peer name veth-r netns "$R"
ip -n "$S" addr add 10.77.0.1/24 dev veth-s
ip -n "$R" addr add 10.77.0.2/24 dev veth-r
for pair in "$S veth-s" "$R veth-r"; do
    set -- $pair
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" mtu 1500 up
    if [[ ${OFFLOADS:-off} == off ]] && command -v ethtool >/dev/null; then
        ip netns exec "$1" ethtool -K "$2" gro off gso off tso off tx-udp-segmentation off >/dev/null 2>&1 || true
    fi
done

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$TMP/file"
ip netns exec "$S" "$MP" signal --listen 10.77.0.1:0 2>"$TMP/signal.log" &
for _ in $(seq 50); do
    URL=$(grep -o 'ws://10\.77\.0\.1:[0-9]*' "$TMP/signal.log" || true)
    [[ -n $URL ]] && break
    sleep 0.1
done
[[ -n $URL ]] || { echo "loss.sh: mp signal did not start" >&2; exit 1; }

export NO_COLOR=1
unset MP_SIGNAL MP_SCTP_MTU MP_BIND
for loss in "${LOSSES[@]}"; do
    ip netns exec "$R" iptables -F INPUT
    if [[ $loss != 0 ]]; then
        ip netns exec "$R" iptables -A INPUT -m statistic --mode random --probability "$loss" -j DROP
    fi
    for run in $(seq "$RUNS"); do
        rm -rf "$TMP/out"
        mkdir "$TMP/out"
        ip netns exec "$S" timeout "$LIMIT" "$MP" send --signal "$URL" "$TMP/file" \
            >/dev/null 2>"$TMP/send.log" &
        sender=$!
        code=
        for _ in $(seq 100); do
            code=$(sed -n 's/^Code: \([^ ]*\).*/\1/p' "$TMP/send.log" 2>/dev/null | head -1)
            [[ -n $code ]] && break
            sleep 0.05
        done
        start=$(date +%s.%N)
        status=ok
        ip netns exec "$R" timeout "$LIMIT" "$MP" receive --signal "$URL" "$code" --yes --json \
            -o "$TMP/out" >"$TMP/recv.log" 2>&1 || status=fail
        end=$(date +%s.%N)
        wait "$sender" || status=fail
        if [[ $status == ok ]] && ! cmp -s "$TMP/file" "$TMP/out/file"; then status=corrupt; fi
        if [[ $status != ok ]]; then
            keep=$(mktemp -d /tmp/loss-failed.XXXXXX)
            cp "$TMP/send.log" "$TMP/recv.log" "$keep/" 2>/dev/null || true
            status="$status (logs in $keep)"
        fi
        # Whole receive (pairing, ICE, DTLS, SCTP, transfer) and the data phase alone
        # (first byte to finished, from the receiver's --json events).
        data=$(python3 -c 'import json,sys
t = {}
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    t[e.get("event")] = e.get("t")
print("%.2f" % (t["finished"] - t["first-byte"]) if "finished" in t and "first-byte" in t else "nan")' "$TMP/recv.log")
        awk -v l="$loss" -v s="$start" -v e="$end" -v d="$data" -v b=$((SIZE_MIB * 1024 * 1024)) -v st="$status" \
            'BEGIN { printf "loss=%s total %.2fs %.1f MB/s | data %ss %.1f MB/s %s\n", l, e - s, b / (e - s) / 1e6, d, (d > 0 ? b / d / 1e6 : 0), st }'
    done
done
