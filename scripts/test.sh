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
ensure_end2end_packages

if [ "${1:-}" != "--e2e" ]; then
  # frontend is the wasm entry point only; it is built (and checked) by cargo leptos below.
  cargo test --workspace --exclude frontend
fi

# The suite starts target/release/taskwire itself (it restarts it in some tests).
# --precompress writes .br (quality 11) and .gz beside each asset; the server sends them.
cargo leptos build --release --precompress
(cd end2end && npx playwright test)
