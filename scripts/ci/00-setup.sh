#!/usr/bin/env bash
# Toolchain, targets and components from rust-toolchain.toml; checks the shared vectors.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rustup show active-toolchain >/dev/null 2>&1 || true
# Installs the pinned toolchain with every target and component the file lists.
rustup toolchain install
rustup target list --installed
if [ -z "$SHARED_DIR" ] || [ ! -f "$SHARED_DIR/vectors/e2ee-v1.json" ]; then
    echo "error: ../shared/vectors not found beside the repository" >&2
    exit 1
fi
command -v python3 >/dev/null || apt_install python3
