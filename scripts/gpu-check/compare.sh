#!/bin/bash
# Ingests what scripts/gpu-check/run.sh brought back (RUN.tgz) into a scratch database through a real
# server, registers a job over the collector's window and one over the nvidia-smi log (imported by
# `wattlas-collector import nvidia-smi`), and prints each job's GPU energy beside NVML's own energy
# counter over the same window, as pynvml read it (no Wattlas code in the reference).
set -euo pipefail
cd "$(dirname "$0")/../.."
run=$(realpath "$1"); work=$(mktemp -d); trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/wattlas/target}
cargo build --release -q -p wattlas-server -p wattlas-collector
url=$(scripts/db up 2>/dev/null | tail -1)
psql -q "$url" -c "drop database if exists gpu_check" -c "create database gpu_check"
port=$((20000 + RANDOM % 20000))
DATABASE_URL=${url%/*}/gpu_check WATTLAS_ADMIN_TOKEN=gpu-check WATTLAS_BIND=127.0.0.1:$port \
  "$CARGO_TARGET_DIR/release/wattlas-server" > "$work/server.log" 2>&1 & server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
tar xzf "$run" -C "$work"
WATTLAS=http://127.0.0.1:$port/api/v1 /usr/bin/python3 scripts/gpu-check/compare.py "$work" \
  "$CARGO_TARGET_DIR/release/wattlas-collector"
