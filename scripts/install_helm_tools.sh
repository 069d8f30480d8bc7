#!/usr/bin/env bash
# Install the offline Helm chart checking tools into <repo>/.cache (git-ignored). Idempotent.
#
#   .cache/bin/helm                  go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION
#   .cache/bin/kubeconform           go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION
#   .cache/k8s-schemas/vX.Y.Z-local[-strict]/<kind>-<group>-<version>.json
#                                    Kubernetes JSON schemas taken from the PyPI wheel kubernetes-validate,
#                                    rewritten to file-relative $refs so kubeconform reads them from disk.
#
# Needs only the Go module proxy and PyPI (no other download). kubeconform must never be run without
# -schema-location pointing at .cache/k8s-schemas: its default location is on the internet.
# Cold (empty Go caches) it takes a few minutes, mostly compiling helm; a second run is a no-op.
#
# Environment overrides: HELM_VERSION, KUBECONFORM_VERSION, KUBERNETES_VALIDATE_VERSION,
# K8S_SCHEMA_VERSIONS (space separated, default "1.33.0"), PYTHON (default: <repo>/.venv/bin/python,
# else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
SCHEMAS="$CACHE/k8s-schemas"
LOGS="$CACHE/logs"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
K8S_SCHEMA_VERSIONS="${K8S_SCHEMA_VERSIONS:-1.33.0}"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi

mkdir -p "$BIN" "$SCHEMAS" "$LOGS"
log() { printf '[install_helm_tools] %s\n' "$*" >&2; }
start=$(date +%s)

# --- Go binaries (built in the background, in parallel with the schema step) -----------------------
command -v go >/dev/null || { log "error: the go command is not on PATH"; exit 1; }

# A go-installed binary reports no proper version of its own (helm says "v3.22", kubeconform says
# "development"); the module version recorded in the binary is the reliable one.
mod_version() { go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3 }'; }
helm_ok() { [[ -x "$BIN/helm" && "$(mod_version "$BIN/helm" helm.sh/helm/v3)" == "$HELM_VERSION" ]]; }
kubeconform_ok() { [[ -x "$BIN/kubeconform" && "$(mod_version "$BIN/kubeconform" github.com/yannh/kubeconform)" == "$KUBECONFORM_VERSION" ]]; }


go_install() { # name module@version
    local name="$1" target="$2"
    log "building $name ($target), log in $LOGS/$name.log"
    # Build into a temporary GOBIN and move the binary into place only when the build succeeded, so an
    # interrupted run never leaves a half-written tool behind.
    local tmpbin; tmpbin="$(mktemp -d "$CACHE/gobin.XXXXXX")"
    if GOBIN="$tmpbin" go install "$target" >"$LOGS/$name.log" 2>&1; then
        mv -f "$tmpbin/$name" "$BIN/$name"; rmdir "$tmpbin"
    else
        rm -rf "$tmpbin"; return 1
    fi
}

pids=()
names=()
if helm_ok; then log "helm $HELM_VERSION already installed"; else
    go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" & pids+=($!); names+=(helm)
fi
if kubeconform_ok; then log "kubeconform $KUBECONFORM_VERSION already installed"; else
    go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" & pids+=($!); names+=(kubeconform)
fi

# --- Kubernetes JSON schemas from the kubernetes-validate wheel ------------------------------------
stamp="$SCHEMAS/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
need_schemas=0
for v in $K8S_SCHEMA_VERSIONS; do
    for d in "v$v-local" "v$v-local-strict"; do
        [[ -f "$SCHEMAS/$d/_definitions.json" && -f "$stamp" ]] || need_schemas=1
    done
done
if [[ $need_schemas == 0 ]]; then
    log "kubernetes schemas ($K8S_SCHEMA_VERSIONS) already in $SCHEMAS"
else
    dl="$CACHE/downloads"
    mkdir -p "$dl"
    wheel="$(ls "$dl"/kubernetes_validate-"$KUBERNETES_VALIDATE_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        log "fetching kubernetes-validate==$KUBERNETES_VALIDATE_VERSION from PyPI (about 108 MB)"
        "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            -d "$dl" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
        wheel="$(ls "$dl"/kubernetes_validate-"$KUBERNETES_VALIDATE_VERSION"-*.whl | head -n1)"
    fi
    log "extracting schemas for Kubernetes $K8S_SCHEMA_VERSIONS from $(basename "$wheel")"
    "$PYTHON" - "$wheel" "$SCHEMAS" $K8S_SCHEMA_VERSIONS <<'PY'
"""Copy vX.Y.Z-local[-strict]/*.json out of the wheel, rewriting refs to be file-relative.

The files carry absolute ids ("$id": "https://kubernetes.io/api/...") and refs rooted there
("/api/_definitions.json#/$defs/..."). Drop every top-level "$id" and make each "$ref" point at the
_definitions.json file in the same directory, so nothing ever resolves to a URL.
"""
import json
import os
import shutil
import sys
import tempfile
import zipfile

wheel, out_root, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
prefix = "kubernetes_validate/kubernetes-json-schema/"


def fix(node):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                if v.startswith("/api/_definitions.json"):
                    v = "_definitions.json" + v[len("/api/_definitions.json"):]
                elif v.startswith("http://") or v.startswith("https://"):
                    raise SystemExit(f"unexpected absolute $ref {v!r}")
                out[k] = v
            else:
                out[k] = fix(v)
        return out
    if isinstance(node, list):
        return [fix(x) for x in node]
    return node


with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    for version in versions:
        for suffix in ("-local", "-local-strict"):
            d = f"v{version}{suffix}"
            members = [n for n in names if n.startswith(prefix + d + "/") and n.endswith(".json")]
            if not members:
                raise SystemExit(f"kubernetes-validate has no schemas for {d}")
            tmp = tempfile.mkdtemp(prefix=f".{d}.", dir=out_root)
            for n in members:
                doc = json.loads(zf.read(n))
                if isinstance(doc, dict):
                    doc.pop("$id", None)
                doc = fix(doc)
                with open(os.path.join(tmp, os.path.basename(n)), "w") as f:
                    json.dump(doc, f, separators=(",", ":"))
            final = os.path.join(out_root, d)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.rename(tmp, final)
            print(f"[install_helm_tools] {d}: {len(members)} schemas", file=sys.stderr)
PY
    touch "$stamp"
    rm -f "$dl"/kubernetes_validate-*.whl  # 108 MB: the extracted schemas are all we keep
fi

# --- wait for the Go builds ------------------------------------------------------------------------
rc=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        log "error: building ${names[$i]} failed; last lines of $LOGS/${names[$i]}.log:"
        tail -n 20 "$LOGS/${names[$i]}.log" >&2 || true
        rc=1
    fi
done
[[ $rc == 0 ]] || exit $rc
helm_ok || { log "error: $BIN/helm is not $HELM_VERSION"; exit 1; }
kubeconform_ok || { log "error: $BIN/kubeconform is not $KUBECONFORM_VERSION"; exit 1; }

log "helm $(mod_version "$BIN/helm" helm.sh/helm/v3), kubeconform $(mod_version "$BIN/kubeconform" github.com/yannh/kubeconform), schemas in $SCHEMAS ($(( $(date +%s) - start )) s)"
