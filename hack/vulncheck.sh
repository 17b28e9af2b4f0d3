#!/usr/bin/env bash
# Runs govulncheck (pinned in hack/tools) over ./... against a local copy of the Go vulnerability database,
# so it needs nothing but the Go module proxy (vuln.go.dev is never contacted).
#
# The database comes from the golang.org/x/vulndb module pinned in hack/vulndb/go.mod: its data/osv holds
# one OSV report per vulnerability, and its cmd/indexdb writes them out as a v1 database (index/db.json,
# index/modules.json, index/vulns.json, ID/GO-YYYY-NNNN.json) that `govulncheck -db file://DIR` reads.
# It is built once per pinned version into the per-user cache and reused. Refresh the data by bumping the pin:
#   cd hack/vulndb && go get golang.org/x/vulndb@latest
#
# Exits 3 (govulncheck's own code) when a vulnerable symbol is reachable from the code; vulnerabilities only
# in imported packages or required modules are listed but do not fail the run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cache_root=${KEYSMITH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keysmith}

# The pinned snapshot: version, commit time and source directory (downloaded and checked against go.sum).
(cd hack/vulndb && go mod download golang.org/x/vulndb)
info=$(cd hack/vulndb && go list -m \
  -f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}} {{.Dir}}' golang.org/x/vulndb)
read -r version stamp src <<<"$info"
[ -d "$src/data/osv" ] || { echo "golang.org/x/vulndb $version has no data/osv in '$src'" >&2; exit 1; }
db="$cache_root/vulndb-$version"

if [ ! -f "$db/index/modules.json" ]; then
  echo ">> building the vulnerability database from golang.org/x/vulndb $version into $db" >&2
  start=$SECONDS
  mkdir -p "$cache_root"
  tmp=$(mktemp -d "$db.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd hack/vulndb && go tool indexdb -vulns "$src/data/osv" -out "$tmp")
  # data/osv carries no timestamps (upstream fills them in from the git history when it publishes), so the
  # database's "last modified" is the snapshot's commit time, which is what govulncheck then prints.
  if grep -q '"modified":"0001-01-01T00:00:00Z"' "$tmp/index/db.json"; then
    printf '{"modified":"%s"}' "$stamp" >"$tmp/index/db.json"
    gzip -9nc "$tmp/index/db.json" >"$tmp/index/db.json.gz"
  fi
  # Another run may have finished first; keep whichever landed.
  mv -T "$tmp" "$db" 2>/dev/null || rm -rf "$tmp"
  trap - EXIT
  echo ">> built the vulnerability database in $((SECONDS - start))s" >&2
fi

entries=$(find "$db/ID" -name '*.json' | wc -l)
echo ">> vulnerability database: golang.org/x/vulndb $version (snapshot $stamp, $entries reports) at $db" >&2
go tool -modfile=hack/tools/go.mod govulncheck -db "file://$db" -show version ./...
