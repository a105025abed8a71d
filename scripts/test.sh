#!/usr/bin/env bash
# Every test of the workspace: README's test command, and what .ci/run runs.
#
# gate-redis's tests start their own redis-server on a free port of 127.0.0.1 (one per test
# binary) and fail, rather than skip, without one. This makes sure it is installed: with
# apt-get as root or through sudo (Debian's `redis-server` package), else it says how.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null
    else
        echo "gate-redis's tests need redis-server on PATH:" \
            "apt-get install redis-server (Debian, Ubuntu) or brew install redis (macOS)" >&2
        exit 1
    fi
fi

exec cargo test --workspace --all-features "$@"
