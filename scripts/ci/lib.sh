# Helpers shared by the test phases (sourced, not run).

# apt_install PKG...: installs the Debian packages that are missing (runs `apt-get update`
# once per boot of the machine), so a fresh machine gets what the tests need.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ ! -f /tmp/.seguro-apt-updated ]; then
        apt-get update -qq
        touch /tmp/.seguro-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The shared protocol folder beside the repository.
SHARED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../shared" 2>/dev/null && pwd || true)"
export SHARED_DIR
