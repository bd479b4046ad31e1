#!/usr/bin/env bash
# Measures what the DaemonSet's resource requests and limits are set from:
# the daemon's peak and steady RSS, the memory its cgroup is charged (RSS
# plus the kernel memory of its BPF maps and programs), and its CPU time
# idle and under an exec storm. It runs the daemon as the pod does: with
# only the manifest's capabilities, in a memory cgroup of its own.
#
#   sudo deploy/measure.sh [SECONDS]        (default 20 s per phase)
#
# Needs root, setpriv (util-linux) and a memory cgroup (v1 or v2).
set -euo pipefail
cd "${SRC:-$(dirname "$0")/..}" # SRC: another checkout to measure
secs=${1:-20}
caps=${CAPS:-+bpf,+perfmon}
work=$(mktemp -d)
bin=$work/bpfstatd
cg=
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	[ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$bin" ./cmd/bpfstatd

# A memory cgroup below ours, so that kernel memory charged for BPF maps
# shows up as it would against the pod's limit.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/bpfstatd-measure-$$
	peak=memory.peak cur=memory.current
else
	cg=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)/bpfstatd-measure-$$
	peak=memory.max_usage_in_bytes cur=memory.usage_in_bytes
fi
mkdir "$cg"

sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" \
	setpriv --bounding-set=-all,"$caps" --inh-caps=-all --ambient-caps=-all --no-new-privs \
	"$bin" --output stdout --admin-socket "$work/admin.sock" --log-format json >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
	"$bin" --health --admin-socket "$work/admin.sock" >/dev/null 2>&1 && break
	sleep 0.1
done
"$bin" --health --admin-socket "$work/admin.sock" >/dev/null || { cat "$work/log"; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
report() { # phase, cpu ticks, seconds, events
	printf '%-10s cpu %5.2f%% of one core  rss %6d KiB  peak rss %6d KiB  cgroup %6d KiB (peak %6d KiB)  %s\n' \
		"$1" "$(echo "100 * $2 / $hz / $3" | bc -l)" "$(kib VmRSS)" "$(kib VmHWM)" \
		"$(( $(cat "$cg/$cur") / 1024 ))" "$(( $(cat "$cg/$peak") / 1024 ))" "$4"
}

echo "kernel $(uname -r), $(nproc) CPUs, capabilities $caps, $secs s per phase"
report start 0 1 "(after loading: BTF parsed and released)"

t0=$(ticks); sleep "$secs"; t1=$(ticks)
report idle $((t1 - t0)) "$secs" ""

# Exec storm: as many short processes as $par shells can start.
par=${PAR:-$(nproc)}
t0=$(ticks)
for i in $(seq "$par"); do
	timeout "$secs" sh -c 'n=0; trap "echo \$n > $0; exit 0" TERM; while :; do /bin/true; n=$((n+1)); done' "$work/n$i" 2>/dev/null &
done
wait $(jobs -p | grep -v "^$pid\$") 2>/dev/null || true
t1=$(ticks)
n=$(cat "$work"/n* | paste -sd+ | bc)
report "exec-storm" $((t1 - t0)) "$secs" "$(( n / secs )) execs/s (x3 events: exec, fork, exit)"
"$bin" --drops --admin-socket "$work/admin.sock"
