#!/usr/bin/env bash
# Checks the gRPC API (proto/) and its generated code (src/gen/), without changing the tree:
#   1. `buf lint` (STANDARD + COMMENTS, see buf.yaml) is clean;
#   2. the .proto files are formatted as `buf format` would (fix with `npx buf format -w`);
#   3. regenerating into a temporary directory gives exactly the committed src/gen/**/*_pb.ts:
#      no file differs, none is missing, none is stale (fix with `npm run generate`).
# Exits 1 naming every problem. Uses the pinned buf and protoc-gen-es from node_modules; no network.
# Run as `npm run generate:check` (or `bash scripts/check-generated.sh`) from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF=node_modules/.bin/buf
if [ ! -x "$BUF" ] || [ ! -x node_modules/.bin/protoc-gen-es ]; then
  echo "check-generated: buf or protoc-gen-es is missing from node_modules; run npm ci" >&2
  exit 1
fi

failed=0

if ! "$BUF" lint; then
  echo "check-generated: buf lint found problems (above)" >&2
  failed=1
fi

if ! "$BUF" format --diff --exit-code >/tmp/ringfence-buf-format.$$ 2>&1; then
  cat /tmp/ringfence-buf-format.$$ >&2
  echo "check-generated: .proto files are not formatted; run: npx buf format -w" >&2
  failed=1
fi
rm -f /tmp/ringfence-buf-format.$$

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUF" generate --output "$tmp"

list() { (cd "$1" 2>/dev/null && find . -type f -name '*_pb.ts' | sed 's|^\./||' | LC_ALL=C sort) || true; }
fresh=$(list "$tmp/src/gen")
committed=$(list src/gen)

stale=0
while IFS= read -r f; do
  [ -n "$f" ] || continue
  if [ ! -f "src/gen/$f" ]; then
    echo "check-generated: missing: src/gen/$f (generated from proto/, not in the tree)" >&2
    stale=1
  elif ! cmp -s "$tmp/src/gen/$f" "src/gen/$f"; then
    echo "check-generated: differs: src/gen/$f" >&2
    diff -u "src/gen/$f" "$tmp/src/gen/$f" | head -20 | cut -c1-160 >&2 || true
    stale=1
  fi
done <<<"$fresh"
while IFS= read -r f; do
  [ -n "$f" ] || continue
  if [ ! -f "$tmp/src/gen/$f" ]; then
    echo "check-generated: stale: src/gen/$f (no .proto generates it any more)" >&2
    stale=1
  fi
done <<<"$committed"
if [ "$stale" -ne 0 ]; then
  echo "check-generated: src/gen is not what proto/ generates; run: npm run generate" >&2
  failed=1
fi

if [ "$failed" -ne 0 ]; then exit 1; fi
echo "check-generated: buf lint clean, protos formatted, src/gen up to date ($(wc -l <<<"$fresh") files)"
