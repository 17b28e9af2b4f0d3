#!/usr/bin/env bash
# promtool for keysmith's Prometheus assets (config/prometheus).
#
#   hack/promtool.sh install   extract promtool from Debian's prometheus package into a per-user cache and
#                              link it as bin/promtool (make promtool). apt-get download + dpkg -x: nothing
#                              is installed, no service starts. Quick when the cache has the version apt offers.
#   hack/promtool.sh test      (make prometheus-test)
#                              1. promtool check rules on the spec of config/prometheus/rules.yaml;
#                              2. promtool test rules on test/prometheus/rules_test.yaml (every alert);
#                              3. promtool check rules on one recording rule per query of
#                                 config/prometheus/grafana-dashboard.json (every query parses);
#                              4. every metric the rules and the dashboard read is one keysmith exports.
#                              Steps 1, 3 and 4 are prepared by hack/promtool (a Go program of this module).
#
# The live-scrape lint (promtool check metrics on the manager's and the standalone verifier's /metrics)
# is a Go test: test/prometheus (go test ./test/prometheus/), which needs bin/promtool too.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${KEYSMITH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keysmith}
bin="$root/bin"
# One temporary directory per run, removed at exit.
tmp=
trap 'if [ -n "$tmp" ]; then rm -rf "$tmp"; fi' EXIT

# candidate prints the version of Debian's prometheus package that apt would fetch, or nothing when apt
# has no index for it.
candidate() {
  local v
  v=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ "$v" != "(none)" ]; then echo "$v"; fi
}

apt_update() {
  echo ">> apt has no usable index for prometheus: apt-get update" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "hack/promtool.sh: apt-get update needs root; run 'sudo apt-get update' and then 'make promtool' again" >&2
    exit 1
  fi
  apt-get update -qq >&2
}

link() { # dir
  mkdir -p "$bin"
  ln -sfn "$1/promtool" "$bin/promtool"
}

install() {
  if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "hack/promtool.sh: needs apt-get and dpkg (Debian or Ubuntu) to extract promtool from the prometheus package" >&2
    exit 1
  fi
  local version dir
  version=$(candidate)
  if [ -z "$version" ]; then
    # No index: a cached promtool will do (the newest one), else ask for an index.
    dir=$(ls -d "$cache_root"/prometheus-*/ 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "${dir%/}/promtool" ]; then
      link "${dir%/}"
      echo ">> bin/promtool: $("$bin/promtool" --version 2>&1 | head -n 1) (cached; apt has no index)" >&2
      return 0
    fi
    apt_update
    version=$(candidate)
    [ -n "$version" ] || { echo "hack/promtool.sh: apt offers no prometheus package" >&2; exit 1; }
  fi
  dir="$cache_root/prometheus-$version"
  if [ ! -x "$dir/promtool" ]; then
    local start=$SECONDS
    tmp=$(mktemp -d)
    echo ">> fetching Debian's prometheus $version (apt-get download, dpkg -x) into $dir" >&2
    # A stale index names a version the mirror no longer has: refresh it once and take the new candidate.
    if ! (cd "$tmp" && apt-get download -qq "prometheus=$version" >"$tmp/download.log" 2>&1); then
      cat "$tmp/download.log" >&2
      apt_update
      version=$(candidate)
      dir="$cache_root/prometheus-$version"
      (cd "$tmp" && apt-get download -qq "prometheus=$version" >&2)
    fi
    dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
    mkdir -p "$dir"
    # Only promtool: the server binary and its web assets are not needed.
    mv "$tmp/x/usr/bin/promtool" "$dir/promtool.tmp"
    mv "$dir/promtool.tmp" "$dir/promtool"
    echo ">> extracted promtool in $((SECONDS - start))s" >&2
  fi
  link "$dir"
  echo ">> bin/promtool: $("$bin/promtool" --version 2>&1 | head -n 1)" >&2
}

run() { # what, command...
  local what=$1
  shift
  echo ">> $what: ${*#"$root/"}" >&2
  "$@"
}

test_rules() {
  local promtool="$bin/promtool"
  [ -x "$promtool" ] || { echo "hack/promtool.sh: $promtool is missing: run 'make promtool'" >&2; exit 1; }
  tmp=$(mktemp -d)
  local out=$tmp
  # rules.yaml: the PrometheusRule's spec; dashboard-rules.yaml: one recording rule per dashboard query;
  # and the check that every metric they read is exported by keysmith.
  (cd "$root" && go run ./hack/promtool -rules config/prometheus/rules.yaml -dashboard config/prometheus/grafana-dashboard.json -out "$out")
  cp "$root/test/prometheus/rules_test.yaml" "$out/rules_test.yaml"
  (
    cd "$out"
    run "alerting rules" "$promtool" check rules rules.yaml
    run "alert unit tests" "$promtool" test rules rules_test.yaml
    run "dashboard queries" "$promtool" check rules dashboard-rules.yaml
  )
}

case "${1:-}" in
  install) install ;;
  test) test_rules ;;
  *)
    echo "usage: hack/promtool.sh install|test" >&2
    exit 2
    ;;
esac
