#!/usr/bin/env bash
# Builds the dashboard in release mode and runs it on http://127.0.0.1:3000 (or
# $LEPTOS_SITE_ADDR). Installs the build tools first if they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ensure_build_tools
cargo leptos build --release
exec target/release/taskwire "$@"
