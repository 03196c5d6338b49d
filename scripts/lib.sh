# Shared by the scripts: sourced, not run. Callers define log().

# Installs the Debian packages that are missing (as root; otherwise says which are missing and stops).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then log "missing packages: ${missing[*]} (run as root or install them)"; exit 1; fi
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# A number derived from a path (private ports and directories named after a cluster's directory).
path_hash() { printf '%s' "$1" | cksum | cut -d' ' -f1; }

# axe-core (the accessibility rules the browser tests run in each page), from npm at a pinned version,
# kept in the cache; prints the path of axe.min.js.
AXE_VERSION=4.14.1
axe_install() {
  local dir=${WATTLAS_CACHE:-$HOME/.cache/wattlas}/axe-core-$AXE_VERSION
  local js=$dir/node_modules/axe-core/axe.min.js
  if [ ! -f "$js" ]; then
    command -v npm >/dev/null || apt_install npm
    log "installing axe-core $AXE_VERSION from npm"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "axe-core@$AXE_VERSION" >&2
  fi
  printf '%s\n' "$js"
}
