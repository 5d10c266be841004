#!/usr/bin/env bash
# Runs every test: the Rust tests of the workspace, then the Playwright suite against the
# release build in Debian's Chromium. Installs whatever is missing first.
#   scripts/test.sh            everything
#   scripts/test.sh --e2e      only the browser suite (still builds the release site)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ensure_build_tools
ensure_chromium
ensure_nats_server
ensure_nginx
ensure_end2end_packages

if [ "${1:-}" != "--e2e" ]; then
  # frontend is the wasm entry point only; it is built (and checked) by cargo leptos below.
  cargo test --workspace --exclude frontend
  # The release build below needs about 1.5 GB more. On a nearly full disk (CI machines
  # have run out here), the test build, which has done its work, makes room for it.
  free_kib=$(df -Pk target | awk 'NR == 2 { print $4 }')
  if [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
    log "only $((free_kib / 1024)) MiB of disk left: removing the test build (target/debug)"
    rm -rf target/debug
  fi
fi

# The suite starts target/release/taskwire itself (it restarts it in some tests).
# --precompress writes .br (quality 11) and .gz beside each asset; the server sends them.
cargo leptos build --release --precompress --split
(cd end2end && npx playwright test)
