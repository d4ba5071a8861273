#!/bin/sh
# Try ringfence: starts ringfenced on a private socket and state directory, then runs the CLI against
# it — a short demo, or `ringfence ARGS...` when arguments are given — and stops the daemon (SIGTERM).
# Needs a kernel with AF_ALG; elsewhere run it in the test VM: npm run vm -- scripts/try.sh [ARGS...]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/ringfence-try.XXXXXX)
export RINGFENCE_SOCKET="$dir/ringfence.sock"
rf() { "$root/bin/ringfence" "$@"; }

# The daemon's JSON log (its audit trail is written at every level) goes to a file, so that stdout is
# the CLI's alone (try.sh status --json | jq); why it cannot start, if it cannot, is on stderr.
"$root/bin/ringfenced" --state-dir "$dir/state" --log-level warn > "$dir/daemon.log" &
daemon=$!
# '|| :': under set -e a failing kill or wait (the daemon already gone) would end the trap early.
trap 'kill -TERM $daemon 2>/dev/null || :; wait $daemon 2>/dev/null || :; rm -rf "$dir"' EXIT
i=0
until [ -S "$RINGFENCE_SOCKET" ] && rf status >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 120 ] || ! kill -0 "$daemon" 2>/dev/null; then echo "try.sh: ringfenced did not start (see its message above; without AF_ALG here, run: npm run vm -- scripts/try.sh)" >&2; exit 1; fi
  sleep 0.5
done

if [ "$#" -gt 0 ]; then
  rf "$@"
  exit $?
fi

set -x
rf status
rf key create demo
rf key create signer --purpose mac
printf 'hello, kernel-held key\n' | rf encrypt demo --aad order-42 > "$dir/msg.rf"
rf decrypt --aad order-42 -i "$dir/msg.rf"
printf 'data' | rf mac signer
rf key rotate demo
rf reencrypt --aad order-42 -i "$dir/msg.rf" | rf decrypt --aad order-42
rf hash --alg sha256 "$root/README.md"
rf key list
rf key show demo
set +x
echo "# The daemon's audit trail has one JSON line per operation (never key bytes or data); the last:"
grep '"log":"audit"' "$dir/daemon.log" | tail -n 1
