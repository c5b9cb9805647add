#!/usr/bin/env bash
# Comparison runs with magic-wormhole's Rust client (wormhole-rs) for the
# benchmark of issue #5.
#
#   bench/wormhole.sh setup               install what is missing; prints "ok"
#   bench/wormhole.sh run FILE OUTDIR     send FILE, print one line of JSON
#   bench/wormhole.sh run-dir DIR OUTDIR  send folder DIR, print one line of JSON
#
# Every run happens in a fresh network namespace that has only a loopback
# interface, with its own mailbox (rendezvous) server and transit relay on
# 127.0.0.1, so nothing can reach the public magic-wormhole servers (nor the
# STUN server the library always asks). The namespace, the servers and any
# process left in it are removed on exit, also on failure. Needs root.
#
# Because wormhole-rs never offers loopback addresses as direct hints, and the
# namespace has no other address, the data goes through the local transit
# relay (a Python/Twisted process on 127.0.0.1), which is not counted in the
# RSS/CPU figures.
#
# wormhole-rs sends a folder as an uncompressed tar (DIR.tar) and does not
# unpack it. run-dir unpacks it into OUTDIR afterwards, outside "seconds", and
# reports that time as "extract_seconds".
#
# JSON keys: seconds (wall clock of the receive side, start to exit),
# setup_seconds (from both clients started until the first received byte is
# on disk; null if not seen), send/recv_rss_kib (max RSS), send/recv_cpu_s
# (user+system), ok (both exited 0 and the received copy equals the source).
#
# The exit status is 0 whenever the JSON line is printed, also with "ok": false;
# it is 2 for a usage or setup error (message on stderr, no JSON).
#
# Environment: WORMHOLE_RS (path of wormhole-rs), WH_VENV (venv holding the
# servers, default ~/.local/share/mp-bench/wormhole-venv), WH_TIMEOUT (seconds
# a client may take, default 600), WH_LOGDIR (if set, the clients' and
# servers' logs are copied there).
set -euo pipefail

WH_CLI_VERSION=0.8.1                 # magic-wormhole-cli (binary wormhole-rs)
WH_MAILBOX_VERSION=0.8.0             # magic-wormhole-mailbox-server
WH_RELAY_VERSION=0.5.0               # magic-wormhole-transit-relay
WH_VENV=${WH_VENV:-$HOME/.local/share/mp-bench/wormhole-venv}
WH_TIMEOUT=${WH_TIMEOUT:-600}
MAILBOX_PORT=4000                    # the namespace is new: its ports are free
RELAY_PORT=4001

die() { echo "wormhole.sh: $*" >&2; exit 2; }

find_wormhole_rs() {
    if [[ -n ${WORMHOLE_RS:-} ]]; then echo "$WORMHOLE_RS"; return; fi
    command -v wormhole-rs 2>/dev/null && return
    [[ -x $HOME/.cargo/bin/wormhole-rs ]] && { echo "$HOME/.cargo/bin/wormhole-rs"; return; }
    return 1
}

# ---------------------------------------------------------------- setup
setup() {
    local -a pkgs=()
    command -v ip >/dev/null || pkgs+=(iproute2)
    [[ -x /usr/bin/time ]] || pkgs+=(time)
    command -v cmp >/dev/null || pkgs+=(diffutils)
    command -v tar >/dev/null || pkgs+=(tar)
    command -v timeout >/dev/null || pkgs+=(coreutils)
    if ((${#pkgs[@]})); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt-get install -y -qq "${pkgs[@]}" >/dev/null || die "apt-get install ${pkgs[*]} failed"
    fi

    local wh
    if ! wh=$(find_wormhole_rs) || [[ $("$wh" --version 2>/dev/null) != *" $WH_CLI_VERSION" ]]; then
        command -v cargo >/dev/null || die "cargo not found"
        local log
        log=$(mktemp)
        if ! nice -n 10 cargo install magic-wormhole-cli --version "$WH_CLI_VERSION" --locked >"$log" 2>&1; then
            tail -n 30 "$log" >&2; rm -f "$log"; die "cargo install magic-wormhole-cli failed"
        fi
        rm -f "$log"
        find_wormhole_rs >/dev/null || die "wormhole-rs installed but not found (is ~/.cargo/bin on PATH?)"
    fi

    if ! "$WH_VENV/bin/python" -c 'import wormhole_mailbox_server, wormhole_transit_relay' 2>/dev/null; then
        if ! python3 -m venv "$WH_VENV" >/dev/null 2>&1; then
            # Debian's own python3 needs python3-venv for this.
            export DEBIAN_FRONTEND=noninteractive
            { apt-get update -qq && apt-get install -y -qq python3-venv; } >/dev/null \
                || die "apt-get install python3-venv failed"
            rm -rf -- "$WH_VENV"
            python3 -m venv "$WH_VENV" || die "python3 -m venv $WH_VENV failed"
        fi
        "$WH_VENV/bin/pip" install -q --disable-pip-version-check \
            "magic-wormhole-mailbox-server==$WH_MAILBOX_VERSION" \
            "magic-wormhole-transit-relay==$WH_RELAY_VERSION" >/dev/null \
            || die "pip install of the wormhole servers failed"
    fi
    echo ok
}

# ---------------------------------------------------------------- run (outside the namespace)
run_outer() {
    local mode=$1 src=$2 outdir=$3
    [[ $EUID -eq 0 ]] || die "needs root (ip netns)"
    if [[ $mode == file ]]; then [[ -f $src ]] || die "not a file: $src"
    else [[ -d $src ]] || die "not a folder: $src"; fi
    if ! command -v ip >/dev/null || [[ ! -x /usr/bin/time ]]; then die "run '$0 setup' first"; fi
    [[ -x $WH_VENV/bin/twist ]] || die "no $WH_VENV/bin/twist: run '$0 setup' first"
    local wh
    wh=$(find_wormhole_rs) || die "wormhole-rs not found: run '$0 setup' first"

    src=$(realpath -e "$src")
    outdir=$(realpath -m "$outdir")
    local name target
    name=$(basename "$src")
    target=$outdir/$name
    # The receiver refuses to overwrite, so clear earlier results; never the source.
    case "$src/" in "$target/"*) die "OUTDIR would receive onto the source itself";; esac
    case "$target/" in "$src/"*) die "OUTDIR must not be inside the source";; esac
    mkdir -p "$outdir"
    rm -rf -- "$target" "$target.tar"

    local tmp ns
    tmp=$(mktemp -d /tmp/wormhole-bench.XXXXXX)
    ns=whbench-$$-$RANDOM
    # shellcheck disable=SC2064
    trap "cleanup_outer '$ns' '$tmp'" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ip netns add "$ns" || die "ip netns add failed"
    ip -n "$ns" link set lo up
    local ifaces
    ifaces=$(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
    [[ $ifaces == "lo " ]] || die "namespace $ns has interfaces other than lo: $ifaces"

    # In the background, so that a signal to this script is handled at once.
    WORMHOLE_RS=$wh WH_TMP=$tmp ip netns exec "$ns" "$(realpath "$0")" _inner "$mode" "$src" "$outdir" &
    wait $!
}

cleanup_outer() {
    local ns=$1 tmp=$2 pid i
    if ip netns list 2>/dev/null | grep -q "^$ns\b"; then
        # Anything still running in the namespace was started by this run.
        for i in 1 2 3 4 5 6 7 8 9 10; do
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [[ -z $pids ]] && break
            for pid in $pids; do kill "$([[ $i -gt 5 ]] && echo -KILL || echo -TERM)" "$pid" 2>/dev/null || true; done
            sleep 0.2
        done
        ip netns del "$ns" 2>/dev/null || echo "wormhole.sh: could not delete netns $ns" >&2
    fi
    if [[ -n ${WH_LOGDIR:-} ]] && mkdir -p "$WH_LOGDIR"; then cp -f "$tmp"/*.log "$WH_LOGDIR"/ 2>/dev/null || true; fi
    rm -rf -- "$tmp"
}

# ---------------------------------------------------------------- run (inside the namespace)
now() { local t=$EPOCHREALTIME; echo "${t/,/.}"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

wait_port() {  # bounded: 300 tries, ~15 s
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

run_inner() {
    local mode=$1 src=$2 outdir=$3 tmp=$WH_TMP wh=$WORMHOLE_RS
    local -a pids=()
    # shellcheck disable=SC2317
    kill_children() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
    trap kill_children EXIT

    # A namespace with lo only: check once more that nothing leads out.
    if ip -o link show | grep -qv ': lo:'; then die "inside the namespace there is more than lo"; fi

    "$WH_VENV/bin/twist" --log-format=text --log-file="$tmp/mailbox.log" wormhole-mailbox \
        --port="tcp:$MAILBOX_PORT:interface=127.0.0.1" --channel-db="$tmp/mailbox.sqlite" \
        </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    "$WH_VENV/bin/twist" --log-format=text --log-file="$tmp/relay.log" transitrelay \
        --port="tcp:$RELAY_PORT:interface=127.0.0.1" \
        </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    wait_port "$MAILBOX_PORT" || { cat "$tmp/mailbox.log" >&2; die "mailbox server did not start"; }
    wait_port "$RELAY_PORT" || { cat "$tmp/relay.log" >&2; die "transit relay did not start"; }

    local -a common=(--relay-server "tcp://127.0.0.1:$RELAY_PORT"
                     --rendezvous-server "ws://127.0.0.1:$MAILBOX_PORT/v1")
    # A fixed code, so both clients can start at once: a nameplate and 20 random letters.
    local code letters
    letters=$(head -c 4096 /dev/urandom | LC_ALL=C tr -dc '[:lower:]')
    ((${#letters} >= 20)) || die "could not make a code"
    code="$((RANDOM % 900 + 100))-${letters:0:20}"

    local name target
    name=$(basename "$src")
    target=$outdir/$name
    [[ $mode == dir ]] && target=$outdir/$name.tar

    local t0 tfirst="" t1 send_pid recv_pid
    t0=$(now)
    timeout -k 5 "$WH_TIMEOUT" /usr/bin/time -f '%e %M %U %S' -o "$tmp/send.time" \
        "$wh" --no-color send --no-qr --code "$code" "${common[@]}" "$src" \
        </dev/null >"$tmp/send.log" 2>&1 &
    send_pid=$!
    pids+=("$send_pid")
    timeout -k 5 "$WH_TIMEOUT" /usr/bin/time -f '%e %M %U %S' -o "$tmp/recv.time" \
        "$wh" --no-color receive --noconfirm --out-dir "$outdir" "${common[@]}" "$code" \
        </dev/null >"$tmp/recv.log" 2>&1 &
    recv_pid=$!
    pids+=("$recv_pid")

    # Watch for the first received byte without forking: read -t as a sleep.
    # Bounded by the receiver's life and by WH_TIMEOUT/0.005 rounds.
    local fd i max=$((WH_TIMEOUT * 200))
    exec {fd}<> <(:)
    for ((i = 0; i < max; i++)); do
        if [[ -s $target ]]; then tfirst=$(now); break; fi
        kill -0 "$recv_pid" 2>/dev/null || break
        read -r -t 0.005 -u "$fd" || true
    done
    exec {fd}>&-

    local recv_rc=0 send_rc=0
    wait "$recv_pid" || recv_rc=$?
    t1=$(now)
    wait "$send_pid" || send_rc=$?

    local ok=true extract=null
    if ((recv_rc != 0 || send_rc != 0)); then ok=false; fi
    if [[ $ok == true ]]; then
        if [[ $mode == file ]]; then
            cmp -s "$src" "$target" || ok=false
        else
            local e0
            e0=$(now)
            if tar -xf "$target" -C "$outdir"; then
                extract=$(sub "$(now)" "$e0")
                rm -f -- "$target"
                diff -r -q "$src" "$outdir/$name" >/dev/null || ok=false
            else
                ok=false
            fi
        fi
    fi
    if [[ $ok != true ]]; then
        {
            echo "wormhole.sh: not ok (send rc=$send_rc, receive rc=$recv_rc; 0 and 0 means the copy differs)"
            echo "--- send:"; tail -n 20 "$tmp/send.log"
            echo "--- receive:"; tail -n 20 "$tmp/recv.log"
        } >&2
    fi

    # /usr/bin/time wrote "%e %M %U %S"; the first field is not used.
    local sm="" su="" ss="" rm_="" ru="" rs=""
    [[ -s $tmp/send.time ]] && read -r _ sm su ss < <(tail -n 1 "$tmp/send.time")
    [[ -s $tmp/recv.time ]] && read -r _ rm_ ru rs < <(tail -n 1 "$tmp/recv.time")
    num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && echo "$1" || echo null; }
    cpu() { [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }' || echo null; }
    local setup=null
    [[ -n $tfirst ]] && setup=$(sub "$tfirst" "$t0")
    local json
    json=$(printf '{"seconds": %s, "setup_seconds": %s, "send_rss_kib": %s, "recv_rss_kib": %s, "send_cpu_s": %s, "recv_cpu_s": %s' \
        "$(sub "$t1" "$t0")" "$setup" "$(num "$sm")" "$(num "$rm_")" "$(cpu "$su" "$ss")" "$(cpu "$ru" "$rs")")
    [[ $mode == dir ]] && json+=", \"extract_seconds\": $extract"
    echo "$json, \"ok\": $ok}"
}

case ${1:-} in
    setup) setup ;;
    run) (($# == 3)) || die "usage: $0 run FILE OUTDIR"; run_outer file "$2" "$3" ;;
    run-dir) (($# == 3)) || die "usage: $0 run-dir DIR OUTDIR"; run_outer dir "$2" "$3" ;;
    _inner) run_inner "$2" "$3" "$4" ;;
    *) die "usage: $0 setup | run FILE OUTDIR | run-dir DIR OUTDIR" ;;
esac
