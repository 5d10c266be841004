#!/usr/bin/env bash
# Builds the dashboard in release mode and runs it on http://127.0.0.1:3000 (or
# $LEPTOS_SITE_ADDR). Installs the build tools first if they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ensure_build_tools
# --precompress writes .br (quality 11) and .gz beside each asset; the server sends them.
cargo leptos build --release --precompress --split
exec target/release/taskwire "$@"
