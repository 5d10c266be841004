#!/usr/bin/env bash
# Installs what building and testing taskwire needs, and skips whatever is already there.
# Both README commands (scripts/run.sh, scripts/test.sh) source this file first.
#
# Why each step is done this way (see ../shared/TOOLCHAIN.md for the measurements):
# - cargo-leptos 0.3.11's published lock needs a newer rustc than this machine's; building
#   it from its own source with one dependency pinned back works.
# - cargo-leptos downloads wasm-bindgen / wasm-opt from the web when they are missing from
#   PATH, which fails here, so both are installed first from the package registries.
# - Debian's binaryen is too old (its wasm-opt breaks hydration); npm's is used instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TASKWIRE_TOOLS_DIR:-$HOME/.cache/taskwire-tools}"
CARGO_LEPTOS_VERSION=0.3.11
BINARYEN_VERSION=132.0.0
mkdir -p "$TOOLS"
export PATH="$HOME/.cargo/bin:$TOOLS/node_modules/.bin:$PATH"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

ensure_wasm_target() {
  if rustup target list --installed | grep -qx wasm32-unknown-unknown; then return; fi
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
}

ensure_cargo_leptos() {
  if cargo leptos --version >/dev/null 2>&1; then return; fi
  log "building cargo-leptos $CARGO_LEPTOS_VERSION from source (takes several minutes, once)"
  local src
  src="$(mktemp -d)"
  # `cargo info` puts the published .crate into cargo's registry cache.
  cargo info "cargo-leptos@$CARGO_LEPTOS_VERSION" >/dev/null 2>&1 || true
  local crate
  crate="$(ls "$HOME"/.cargo/registry/cache/*/cargo-leptos-$CARGO_LEPTOS_VERSION.crate | head -n1)"
  tar -xzf "$crate" -C "$src"
  (
    cd "$src/cargo-leptos-$CARGO_LEPTOS_VERSION"
    cargo update -p cargo-util-schemas --precise 0.14.0
    # A build tool does not need LTO; without it the install takes a fraction of the time.
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install --path . --locked --features no_downloads
  )
  rm -rf "$src"
}

ensure_wasm_bindgen() {
  # The CLI must match the wasm-bindgen library the workspace locks.
  local want
  want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$want" ]; then return; fi
  log "installing wasm-bindgen-cli $want"
  cargo install wasm-bindgen-cli --version "=$want" --force
}

ensure_wasm_opt() {
  if [ -x "$TOOLS/node_modules/.bin/wasm-opt" ]; then return; fi
  log "installing binaryen $BINARYEN_VERSION (wasm-opt) from npm"
  npm install --prefix "$TOOLS" --no-audit --no-fund "binaryen@$BINARYEN_VERSION" >/dev/null
}

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  log "installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# The fleet tests start their own nats-server (JetStream, a free port, a temporary store).
ensure_nats_server() {
  if command -v nats-server >/dev/null; then return; fi
  log "installing Debian's nats-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
}

# The TLS test (end2end/tests/tls.spec.ts) puts Debian's nginx in front of taskwire, with a
# certificate it makes with openssl, and runs that nginx itself (a config in a temporary
# dir, a free port). The package's own service is not wanted: Debian starts it on install
# (the default site on port 80, and an install that fails when port 80 is taken), unless
# policy-rc.d says no. So one is put in place for the install when there is none (Docker
# images have their own), and a service the install started anyway is stopped.
ensure_nginx() {
  local want=() policy=/usr/sbin/policy-rc.d
  [ -x /usr/sbin/nginx ] || want+=(nginx)
  command -v openssl >/dev/null || want+=(openssl)
  [ ${#want[@]} -gt 0 ] || return 0
  log "installing Debian's ${want[*]} (no service started)"
  apt-get update -qq
  (
    if [ ! -e "$policy" ]; then
      trap 'rm -f "$policy"' EXIT
      printf '#!/bin/sh\n# scripts/setup.sh (taskwire): no service starts during its install\nexit 101\n' >"$policy"
      chmod 755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
  )
  if [ ! -x /usr/sbin/nginx ] || [ ! -s /run/nginx.pid ] || ! kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    return 0
  fi
  log "stopping the nginx service the package started"
  if [ -d /run/systemd/system ]; then systemctl stop nginx; else /usr/sbin/nginx -s quit; fi
}

ensure_end2end_packages() {
  if [ -d "$ROOT/end2end/node_modules/@playwright/test" ]; then return; fi
  log "installing the end-to-end test packages"
  (cd "$ROOT/end2end" && npm ci --no-audit --no-fund >/dev/null)
}

# xterm.js for the task page's terminal, pinned by app/js/package-lock.json, copied into
# public/xterm/ (which cargo-leptos copies into the site). Copied at every build: it is small.
ensure_xterm() {
  local js="$ROOT/app/js" out="$ROOT/public/xterm"
  if [ ! -d "$js/node_modules/@xterm/xterm" ] || [ ! -d "$js/node_modules/@xterm/addon-fit" ]; then
    log "installing xterm.js (npm ci in app/js)"
    (cd "$js" && npm ci --no-audit --no-fund >/dev/null)
  fi
  mkdir -p "$out"
  cp "$js/node_modules/@xterm/xterm/lib/xterm.mjs" "$js/node_modules/@xterm/xterm/css/xterm.css" \
    "$js/node_modules/@xterm/addon-fit/lib/addon-fit.mjs" "$out/"
}

ensure_build_tools() {
  ensure_xterm
  ensure_wasm_target
  ensure_wasm_opt
  ensure_wasm_bindgen
  ensure_cargo_leptos
}

# Run directly (`bash scripts/setup.sh`), install everything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_build_tools
  ensure_chromium
  ensure_nats_server
  ensure_nginx
  ensure_end2end_packages
fi
