"""Helm chart checks, fully offline.

Tools come from ``scripts/install_helm_tools.sh`` (helm and kubeconform in ``.cache/bin``, Kubernetes JSON
schemas in ``.cache/k8s-schemas``). Without them these tests skip with the reason, except in CI
(``CI`` set), where a missing tool is a failure.

kubeconform is only ever run with ``-schema-location`` pointing into ``.cache/k8s-schemas`` (its default
location is on the internet), and with a dead proxy in its environment so that any attempt to download
fails at once instead of leaving the machine.
"""
from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spanscribe"
HERE = Path(__file__).resolve().parent
VALUES_DIR = HERE / "values"
BAD_VALUES_DIR = HERE / "bad-values"
CACHE_BIN = ROOT / ".cache" / "bin"
SCHEMA_DIR = ROOT / ".cache" / "k8s-schemas"
KUBE_VERSION = "1.33.0"
RELEASE = "rel"
NAMESPACE = "spanscribe"

VARIANTS = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
BAD_VALUES = sorted(p.name for p in BAD_VALUES_DIR.glob("*.yaml"))
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Kinds without a schema in the Kubernetes set (CRDs); checked by hand below instead.
CRD_KINDS = {"ServiceMonitor"}
# Environment variables the chart sets that are not spanscribe settings.
OTHER_ENV = {"POD_NAME", "NODE_NAME", "HF_HUB_OFFLINE", "OMP_NUM_THREADS", "SPANSCRIBE_CACHE"}


# ------------------------------------------------------------------------------------------------
# tools
# ------------------------------------------------------------------------------------------------
def _missing(reason: str) -> None:
    msg = f"{reason}: run scripts/install_helm_tools.sh"
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI is set: helm checks must run in CI)")
    pytest.skip(msg)


def _find_tool(name: str) -> str | None:
    p = CACHE_BIN / name
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    return shutil.which(name)


@pytest.fixture(scope="session")
def helm() -> str:
    path = _find_tool("helm")
    if path is None:
        _missing("helm not found in .cache/bin or on PATH")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def kubeconform() -> list[str]:
    path = _find_tool("kubeconform")
    if path is None:
        _missing("kubeconform not found in .cache/bin or on PATH")
    strict_dir = SCHEMA_DIR / f"v{KUBE_VERSION}-local-strict"
    if not (strict_dir / "_definitions.json").is_file() or not (strict_dir / "statefulset-apps-v1.json").is_file():
        _missing(f"local Kubernetes schemas missing in {strict_dir}")
    location = str(SCHEMA_DIR) + "/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return [
        path, "-strict", "-summary", "-output", "json",
        "-kubernetes-version", KUBE_VERSION,
        "-schema-location", location,  # the ONLY location: no default, never the internet
        "-skip", ",".join(sorted(CRD_KINDS)),
    ]


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    # Belt and braces: should anything try to download, it hits a closed local port and fails at once.
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[k] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    # helm: keep its caches and config out of the user's home.
    cache = ROOT / ".cache" / "helm-home"
    env["HELM_CACHE_HOME"] = str(cache / "cache")
    env["HELM_CONFIG_HOME"] = str(cache / "config")
    env["HELM_DATA_HOME"] = str(cache / "data")
    return env


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_offline_env(), **kw)


def _template(helm: str, values: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if values is not None:
        cmd += ["-f", str(values)]
    return _run(cmd + list(extra))


_render_cache: dict[str, str] = {}


def render(helm: str, variant: str) -> str:
    if variant not in _render_cache:
        res = _template(helm, VALUES_DIR / variant)
        assert res.returncode == 0, f"helm template -f {variant} failed:\n{res.stderr}"
        _render_cache[variant] = res.stdout
    return _render_cache[variant]


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def values_of(variant: str) -> dict[str, Any]:
    """The chart defaults merged with a variant file (as Helm does for maps)."""

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    base = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(base, yaml.safe_load((VALUES_DIR / variant).read_text()) or {})


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            ps = pod_spec(d)
            for c in ps.get("initContainers", []) + ps["containers"]:
                yield d, c


# ------------------------------------------------------------------------------------------------
# lint, render, validate
# ------------------------------------------------------------------------------------------------
def test_values_schema_is_generated_file() -> None:
    """values.schema.json is what tests/helm/gen_schema.py writes (edit the generator, then run it)."""
    spec = importlib.util.spec_from_file_location("spanscribe_helm_gen_schema", HERE / "gen_schema.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (CHART / "values.schema.json").read_text() == mod.render(), "run: python tests/helm/gen_schema.py"


def test_values_yaml_documents_every_key() -> None:
    """Every leaf key in values.yaml has a comment on the line(s) above it or above its parent block."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        j = i - 1
        while j >= 0 and lines[j].strip() == "":
            j -= 1
        prev = lines[j].strip() if j >= 0 else ""
        if prev.startswith("#"):
            continue
        # A key right after a sibling's inline block or a documented parent is fine only if its parent
        # block itself is documented; require a comment on leaf keys whose parent has none.
        k = j
        documented_parent = False
        while k >= 0:
            pm = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):\s*$", lines[k])
            if pm and len(pm.group(1)) < indent:
                q = k - 1
                documented_parent = q >= 0 and lines[q].strip().startswith("#")
                break
            k -= 1
        if not documented_parent or indent == 0:
            undocumented.append(f"{i + 1}: {line.strip()}")
    assert not undocumented, "values.yaml keys without a comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict(helm: str, variant: str) -> None:
    res = _run([helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(VALUES_DIR / variant)])
    assert res.returncode == 0, f"helm lint --strict -f {variant}:\n{res.stdout}\n{res.stderr}"
    assert "[WARNING]" not in res.stdout and "[ERROR]" not in res.stdout, res.stdout


def test_lint_without_values_names_bootstrap(helm: str) -> None:
    """The bare chart needs kafka.bootstrapServers; lint says so."""
    res = _run([helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION])
    assert res.returncode != 0
    assert "/kafka/bootstrapServers" in res.stdout + res.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_template_validates_with_kubeconform(helm: str, kubeconform: list[str], variant: str, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render(helm, variant))
    res = _run(kubeconform + [str(rendered)])
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"kubeconform output is not JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    problems = [r for r in report.get("resources", []) if r.get("status") in ("statusInvalid", "statusError")]
    assert res.returncode == 0 and not problems, json.dumps(problems or report, indent=1)[:6000]
    summary = report["summary"]
    docs = docs_of(rendered.read_text())
    n_crd = sum(1 for d in docs if d["kind"] in CRD_KINDS)
    assert summary["valid"] == len(docs) - n_crd, summary
    assert summary["skipped"] == n_crd, summary


def test_kubeconform_really_validates(kubeconform: list[str], tmp_path: Path) -> None:
    """A wrong field is caught: the local schemas are found and strict mode is on."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  serviceName: x\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers: [{name: c, image: i, bogusField: 1}]\n"
    )
    res = _run(kubeconform + [str(bad)])
    assert res.returncode != 0
    assert "bogusField" in res.stdout + res.stderr


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_values_rejected_with_message(helm: str, bad: str) -> None:
    path = BAD_VALUES_DIR / bad
    expects = [ln.split(":", 1)[1].strip() for ln in path.read_text().splitlines() if ln.startswith("# expect:")]
    assert expects, f"{bad} has no '# expect: <text>' line"
    res = _template(helm, path)
    assert res.returncode != 0, f"{bad} was accepted:\n{res.stdout[:2000]}"
    for text in expects:
        assert text in res.stderr, f"{bad}: error message lacks {text!r}:\n{res.stderr}"


# ------------------------------------------------------------------------------------------------
# what the manifests say
# ------------------------------------------------------------------------------------------------
def test_default_install_shape(helm: str) -> None:
    docs = docs_of(render(helm, "default.yaml"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["ServiceAccount", "ConfigMap", "Service", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget", "Job"]
    ), kinds
    sts = by_kind(docs, "StatefulSet")[0]
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] in {d["metadata"]["name"] for d in by_kind(docs, "Service")}
    headless = [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == sts["spec"]["serviceName"]][0]
    assert headless["spec"]["clusterIP"] == "None"
    vct = sts["spec"]["volumeClaimTemplates"][0]
    assert vct["metadata"]["name"] == "data" and vct["spec"]["resources"]["requests"]["storage"] == "10Gi"
    c = pod_spec(sts)["containers"][0]
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "web"}
    assert {"name": "web", "containerPort": 6066, "protocol": "TCP"} in c["ports"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/spanscribe"] == "data" and mounts["/tmp"] == "tmp"
    # The reference STT server is the default STT URL.
    stt_svc = [d for d in by_kind(docs, "Service") if d["metadata"]["name"].endswith("-stt")][0]
    args = c["args"]
    assert args[args.index("--stt-url") + 1] == f"ws://{stt_svc['metadata']['name']}:2700"
    # Topics hook.
    job = by_kind(docs, "Job")[0]
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"]
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    assert pod_spec(job)["containers"][0]["args"][:2] == ["topics", "create"]
    # The hook runs before the chart's ServiceAccount exists.
    assert pod_spec(job)["serviceAccountName"] == "default"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_security(helm: str, variant: str) -> None:
    docs = docs_of(render(helm, variant))
    for d, c in containers(docs):
        ps = pod_spec(d)
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, d["metadata"]["name"]
        assert sc["readOnlyRootFilesystem"] is True, d["metadata"]["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], d["metadata"]["name"]
        assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert ps["automountServiceAccountToken"] is False
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{c['name']}: no writable /tmp"
        tmp = [v for v in ps["volumes"] if v["name"] == "tmp"][0]
        assert "emptyDir" in tmp
        if d["kind"] == "DaemonSet":  # the edge: root with CAP_NET_RAW only (plus setuid/setgid to drop root)
            assert ps["hostNetwork"] is True and ps["dnsPolicy"] == "ClusterFirstWithHostNet"
            added = set(sc["capabilities"]["add"])
            assert "NET_RAW" in added and added <= {"NET_RAW", "SETUID", "SETGID"}
            assert ("--user" in c["args"]) == bool(added & {"SETUID", "SETGID"})
            assert sc.get("privileged") is False
        else:
            assert ps["securityContext"]["runAsNonRoot"] is True
            assert ps["securityContext"]["runAsUser"] != 0
            assert "add" not in sc["capabilities"]
        assert "resources" in c and c["resources"].get("requests"), c["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_replicas_never_exceed_partitions(helm: str, variant: str) -> None:
    v = values_of(variant)
    docs = docs_of(render(helm, variant))
    parts = v["kafka"]["partitions"]
    for sts in by_kind(docs, "StatefulSet"):
        assert sts["spec"].get("replicas", 0) <= parts
        args = pod_spec(sts)["containers"][0]["args"]
        assert int(args[args.index("--partitions") + 1]) == parts
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["maxReplicas"] <= parts
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "StatefulSet" and target["name"] in {s["metadata"]["name"] for s in by_kind(docs, "StatefulSet")}
        # With an HPA the StatefulSet leaves replicas to it.
        assert all("replicas" not in s["spec"] for s in by_kind(docs, "StatefulSet"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_secret_references_resolve(helm: str, variant: str) -> None:
    """Every Secret a pod uses is rendered by the chart or named as an existing secret in the values;
    the pre-install topics Job uses only what exists before the release (hook copies, existing secrets)."""
    v = values_of(variant)
    docs = docs_of(render(helm, variant))
    rendered = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    k = v["kafka"]
    existing = {k["tls"]["ca"]["existingSecret"], k["tls"]["clientCert"]["existingSecret"], k["sasl"]["existingSecret"]} - {""}
    for d, c in containers(docs):
        is_hook = "helm.sh/hook" in d["metadata"].get("annotations", {})
        refs: list[tuple[str, str]] = []
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.append((ref["name"], ref["key"]))
        for vol in pod_spec(d).get("volumes", []):
            if "secret" in vol:
                for item in vol["secret"]["items"]:
                    refs.append((vol["secret"]["secretName"], item["key"]))
        for name, key in refs:
            if name in existing:
                continue
            assert name in rendered, f"{d['kind']}/{d['metadata']['name']} uses Secret {name} which nobody makes"
            sec = rendered[name]
            assert key in sec["data"], f"Secret {name} has no key {key}"
            sec_is_hook = "helm.sh/hook" in sec["metadata"].get("annotations", {})
            assert sec_is_hook == is_hook, f"{d['metadata']['name']} (hook={is_hook}) uses {name} (hook={sec_is_hook})"
    # Hook copies carry the same data as the release's Secret.
    hooks = [s for s in rendered.values() if "helm.sh/hook" in s["metadata"].get("annotations", {})]
    for h in hooks:
        base = rendered[h["metadata"]["name"].removesuffix("-hook")]
        assert base["data"] == h["data"]
        assert int(h["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_tls_sasl_env_and_files(helm: str) -> None:
    docs = docs_of(render(helm, "tls-sasl.yaml"))
    sts = by_kind(docs, "StatefulSet")[0]
    c = pod_spec(sts)["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["SPANSCRIBE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["SPANSCRIBE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-256"
    assert "secretKeyRef" in env["SPANSCRIBE_KAFKA_SASL_PASSWORD"]["valueFrom"]
    assert env["SPANSCRIBE_KAFKA_CLIENT_RACK"]["value"] == "eu-west-1a"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for var, vol, fname in (
        ("SPANSCRIBE_KAFKA_SSL_CA_LOCATION", "kafka-ca", "ca.crt"),
        ("SPANSCRIBE_KAFKA_SSL_CERTIFICATE_LOCATION", "kafka-client-cert", "tls.crt"),
        ("SPANSCRIBE_KAFKA_SSL_KEY_LOCATION", "kafka-client-cert", "tls.key"),
    ):
        assert env[var]["value"] == f"{mounts[vol]}/{fname}"
        secret_vol = [x for x in pod_spec(sts)["volumes"] if x["name"] == vol][0]["secret"]
        assert fname in {i["path"] for i in secret_vol["items"]}
    sec = [s for s in by_kind(docs, "Secret") if not s["metadata"].get("annotations")][0]
    assert base64.b64decode(sec["data"]["sasl-password"]).decode() == "not-a-real-password"
    assert base64.b64decode(sec["data"]["ca.crt"]).decode().startswith("-----BEGIN CERTIFICATE-----")


def test_existing_secrets_strimzi(helm: str) -> None:
    docs = docs_of(render(helm, "existing-secrets.yaml"))
    assert not by_kind(docs, "Secret"), "existing secrets: the chart must not create any"
    assert not by_kind(docs, "ServiceAccount")
    for d, c in containers(docs):
        ps = pod_spec(d)
        assert ps["serviceAccountName"] == "spanscribe-sa"
        assert ps["imagePullSecrets"] == [{"name": "regcred"}]
        if c["args"][0] == "stt-server":  # the only component that never talks to Kafka
            assert not any(e["name"].startswith("SPANSCRIBE_KAFKA_") for e in c.get("env", []))
            continue
        vols = {x["name"]: x["secret"] for x in ps["volumes"] if "secret" in x}
        assert vols["kafka-ca"]["secretName"] == "my-cluster-cluster-ca-cert"
        assert vols["kafka-client-cert"]["secretName"] == "spanscribe"
        assert {i["key"] for i in vols["kafka-client-cert"]["items"]} == {"user.crt", "user.key"}
        if d["kind"] != "DaemonSet":
            assert c["image"] == "registry.example.net/spanscribe/spanscribe@sha256:" + "0123456789abcdef" * 4


def test_edge_only_release(helm: str) -> None:
    docs = docs_of(render(helm, "edge.yaml"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["DaemonSet", "Service", "ServiceAccount", "ServiceMonitor"], kinds
    ds = by_kind(docs, "DaemonSet")[0]
    ps = pod_spec(ds)
    assert ps["nodeSelector"] == {"spanscribe.io/mirror": "true"}
    assert ps["tolerations"][0]["key"] == "spanscribe.io/capture"
    c = ps["containers"][0]
    args = c["args"]
    assert args[0] == "edge"
    assert args[args.index("--interface") + 1] == "eth1" and args[args.index("--site") + 1] == "site-a"
    assert args[args.index("--user") + 1] == "nobody"
    env = {e["name"]: e for e in c["env"]}
    assert env["SPANSCRIBE_KAFKA_SASL_USERNAME"]["value"] == "site-a"
    assert env["SPANSCRIBE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "site-a-kafka-user", "key": "password"}
    sm = by_kind(docs, "ServiceMonitor")[0]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("variant", VARIANTS)
def test_servicemonitors_match_services(helm: str, variant: str) -> None:
    """The CRD kinds kubeconform skips: check they select a rendered Service with the named port."""
    docs = docs_of(render(helm, variant))
    services = by_kind(docs, "Service")
    for sm in by_kind(docs, "ServiceMonitor"):
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(sm["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if sel.items() <= s["metadata"]["labels"].items()]
        assert matched, f"ServiceMonitor {sm['metadata']['name']} selects no Service"
        for ep in sm["spec"]["endpoints"]:
            assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme"}
            assert ep["path"] == "/metrics"
            assert any(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in matched)
            assert re.fullmatch(r"\d+(ms|s|m|h)", ep["interval"])


def test_networkpolicies(helm: str) -> None:
    docs = docs_of(render(helm, "stt-off.yaml"))
    (np,) = by_kind(docs, "NetworkPolicy")[:1]
    egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 9092, 2700, 443} <= egress_ports
    docs = docs_of(render(helm, "autoscaling.yaml"))
    names = {d["metadata"]["name"] for d in by_kind(docs, "NetworkPolicy")}
    assert {f"{RELEASE}-spanscribe-worker", f"{RELEASE}-spanscribe-stt", f"{RELEASE}-spanscribe-topics"} <= names


def test_grafana_dashboard(helm: str) -> None:
    docs = docs_of(render(helm, "autoscaling.yaml"))
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")][0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["spanscribe-overview.json"])
    assert dash["uid"] and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert all("spanscribe_" in e for e in exprs)
    # Metrics that the code defines today must be on the dashboard.
    metrics_src = (ROOT / "spanscribe" / "metrics.py").read_text()
    for name in re.findall(r'"(spanscribe_[a-z_]+)"', metrics_src):
        assert any(name in e for e in exprs), f"{name} is not on the dashboard"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_replay_job_name_follows_arguments(helm: str) -> None:
    a = docs_of(render(helm, "replay.yaml"))
    res = _template(helm, VALUES_DIR / "replay.yaml", "--set", "replay.to=2026-11-24T10:00:00Z")
    b = docs_of(res.stdout)
    ja = [j for j in by_kind(a, "Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == "replay"][0]
    jb = [j for j in by_kind(b, "Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == "replay"][0]
    assert ja["metadata"]["name"] != jb["metadata"]["name"]
    assert len(ja["metadata"]["name"]) <= 63
    assert "helm.sh/hook" not in ja["metadata"].get("annotations", {})


# ------------------------------------------------------------------------------------------------
# the CLI accepts what the chart runs
# ------------------------------------------------------------------------------------------------
def _cli() -> Any:
    try:
        from spanscribe import cli
    except ImportError as exc:  # pragma: no cover - only before spanscribe/cli.py exists
        if os.environ.get("CI"):
            pytest.fail(f"spanscribe.cli cannot be imported: {exc}")
        pytest.skip(f"spanscribe.cli cannot be imported: {exc}")
    if not hasattr(cli, "build_parser"):
        pytest.fail("spanscribe.cli has no build_parser(): the chart's commands cannot be validated")
    return cli


def _placeholder_env(c: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The container's environment with secrets and file paths replaced by harmless local stand-ins."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = "placeholder"
        else:
            env[e["name"]] = "field"
    return env


@pytest.mark.parametrize("variant", VARIANTS)
def test_cli_accepts_chart_commands(helm: str, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli()
    from spanscribe import config as sconfig

    docs = docs_of(render(helm, variant))
    config_maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    seen = set()
    for d, c in containers(docs):
        assert c["command"] == ["spanscribe"], f"{c['name']}: command {c['command']}"
        argv = list(c["args"])
        seen.add(argv[0])
        parser = cli.build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse prints the reason to stderr
            pytest.fail(f"spanscribe rejects the chart's {d['kind']}/{c['name']} args {argv} (exit {exc.code})")
        # The config file the chart mounts, where the args point at it.
        if "--config" in argv:
            mount = [m for m in c["volumeMounts"] if m["mountPath"] == argv[argv.index("--config") + 1]][0]
            vol = [v for v in pod_spec(d)["volumes"] if v["name"] == mount["name"]][0]
            cm = config_maps[vol["configMap"]["name"]]
            local = tmp_path / f"{c['name']}-config.yaml"
            local.write_text(cm["data"][mount["subPath"]])
            args.config = str(local)
        env = _placeholder_env(c, tmp_path)
        for name in env:
            assert name.startswith("SPANSCRIBE_") or name in OTHER_ENV, f"{c['name']}: unknown env var {name}"
        for name in list(os.environ):
            if name.startswith("SPANSCRIBE_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The same settings the CLI computes before running the command: flags > env > --config file.
        if hasattr(cli, "_settings"):
            settings = cli._settings(args)
        else:
            settings = sconfig.load(getattr(args, "config", None))
        v = values_of(variant)
        if argv[0] != "stt-server":
            assert settings["bootstrap_servers"] == v["kafka"]["bootstrapServers"]
            assert settings["topic_prefix"] == v["kafka"]["topicPrefix"]
        _check_librdkafka_keys(settings.get("kafka", {}))
        if argv[0] in ("worker", "replay"):
            for url in settings["stt"]["urls"]:
                assert re.match(r"wss?://", url)
            for net in settings["speakers"]["agent_networks"]:
                ipaddress.ip_network(net, strict=False)
        if argv[0] == "worker":
            assert settings["worker"]["nat_fallback"] is v["workers"].get("natFallback", True)
    assert seen, "no containers rendered"


_rdkafka_checked: dict[str, str | None] = {}


def _check_librdkafka_keys(props: dict[str, str]) -> None:
    """Each SPANSCRIBE_KAFKA_* variable maps to a property librdkafka knows."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    for key in props:
        if key not in _rdkafka_checked:
            err: str | None = None
            try:
                # A producer is configured without connecting anywhere until it has to.
                p = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0, key: _sample_value(key)})
                p.flush(0)
                del p
            except confluent_kafka.KafkaException as exc:
                err = str(exc)
            except (ValueError, TypeError) as exc:
                err = str(exc)
            _rdkafka_checked[key] = err
        err = _rdkafka_checked[key]
        assert not (err and "No such configuration property" in err), f"librdkafka has no property {key!r}: {err}"


def _sample_value(key: str) -> str:
    return {
        "security.protocol": "PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "enable.idempotence": "true",
    }.get(key, "x")


# ------------------------------------------------------------------------------------------------
# Dockerfiles and the install script
# ------------------------------------------------------------------------------------------------
def _pyproject_extras() -> dict[str, set[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    raw = data["project"].get("optional-dependencies", {})
    name = data["project"]["name"]

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = {extra}
        for dep in raw.get(extra, []):
            m = re.match(rf"^{re.escape(name)}\[([^\]]+)\]", dep.replace(" ", ""))
            if m:
                for e in m.group(1).split(","):
                    if e not in seen:
                        out |= expand(e, seen | {extra})
        return out

    return {e: expand(e) for e in raw}


_PIP_TARGET = re.compile(r"""(?:^|\s)(?:-e\s+|--editable\s+)?["']?\.(?:\[([A-Za-z0-9_,\- ]*)\])?["']?(?=[\s`);]|$)""")


def _root_installs(text: str) -> list[set[str]]:
    """Extras of every `pip install` of the repository root (`.`, `-e .`, `".[a,b]"`) in text."""
    out = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        if line.lstrip().startswith("#"):  # Dockerfile and shell comments
            continue
        for cmd in re.split(r"&&|;|\|\|", line):
            if re.search(r"\bpip3?\s+install\b", cmd):
                rest = re.split(r"\bpip3?\s+install\b", cmd, maxsplit=1)[1]
                for m in _PIP_TARGET.finditer(rest):
                    out.append({e.strip() for e in (m.group(1) or "").split(",") if e.strip()})
    return out


def _final_stage(dockerfile: str) -> str:
    return re.split(r"(?im)^FROM\s", dockerfile)[-1]


@pytest.mark.parametrize(
    "name, extras, forbidden",
    [("Dockerfile", {"centre", "stt"}, set()), ("Dockerfile.edge", set(), {"centre", "stt", "all"})],
)
def test_dockerfile(name: str, extras: set[str], forbidden: set[str]) -> None:
    text = (ROOT / name).read_text()
    assert re.search(r"(?im)^FROM\s+python:3\.11-slim\b|^ARG\s+PYTHON_IMAGE=python:3\.11-slim\b", text), "base must be python:3.11-slim"
    installs = _root_installs(text)
    assert installs, f"{name} does not pip install the repository"
    assert installs == [extras], f"{name} installs {installs}, expected [{extras}]"
    known = _pyproject_extras()
    assert extras <= set(known), f"extras {extras - set(known)} not in pyproject.toml"
    assert not forbidden & set().union(*installs)
    if name == "Dockerfile.edge":
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert not re.search(r"faust|centre|\[all", code, re.I), "the edge image must not install Faust"
    final = _final_stage(text)
    users = re.findall(r"(?im)^USER\s+(\S+)", final)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name} must end as a non-root user"
    assert re.search(r"(?im)^USER\s+10001", final), "uid 10001 matches the chart's podSecurityContext"
    assert (ROOT / ".dockerignore").is_file()
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in " ".join(ignore) and ".cache" in " ".join(ignore) and ".git" in " ".join(ignore)


def test_dockerfile_installs_match_readme_and_ci() -> None:
    """The images install the package the way the README and CI do: the repository root, with extras
    that the documented install covers (compared loosely: `all` covers centre and stt)."""
    sources = [ROOT / "README.md"] + sorted((ROOT / ".ci").glob("*")) if (ROOT / ".ci").is_dir() else [ROOT / "README.md"]
    documented: list[set[str]] = []
    for src in sources:
        if src.is_file():
            documented += _root_installs(src.read_text(errors="replace"))
    if not documented:
        if os.environ.get("CI"):
            pytest.fail("README.md/.ci show no `pip install` of the repository root to compare the Dockerfiles with")
        pytest.skip("README.md/.ci show no `pip install` of the repository root yet")
    readme_text = "\n".join(src.read_text(errors="replace") for src in sources if src.is_file())
    if re.search(r"pip3?\s+install\b[^\n]*-c\s+constraints\.txt", readme_text):
        for name in ("Dockerfile", "Dockerfile.edge"):
            text = (ROOT / name).read_text()
            for line in re.sub(r"\\\n", " ", text).splitlines():
                if re.search(r"\bpip3?\s+install\b", line) and not line.lstrip().startswith("#"):
                    assert "-c constraints.txt" in line, f"{name}: pin like the README: {line.strip()}"
    known = _pyproject_extras()
    covered: set[str] = set()
    for extras in documented:
        for e in extras:
            covered |= known.get(e, {e})
    for name in ("Dockerfile", "Dockerfile.edge"):
        for extras in _root_installs((ROOT / name).read_text()):
            unknown = extras - set(known)
            assert not unknown, f"{name} uses extras {unknown} that pyproject.toml does not define"
            assert extras <= covered, f"{name} installs extras {extras - covered} that README/.ci never install"


def test_install_script_is_idempotent() -> None:
    script = ROOT / "scripts" / "install_helm_tools.sh"
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = script.read_text()
    assert "helm.sh/helm/v3/cmd/helm@" in text and "github.com/yannh/kubeconform/cmd/kubeconform@" in text
    if not (CACHE_BIN / "helm").is_file() or shutil.which("go") is None:
        _missing("tools not installed")
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, env=_offline_env())
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 60, "a second run should do nothing"
    assert "already installed" in res.stderr and "already in" in res.stderr, res.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


def test_dashboard_metrics_exist_in_the_code() -> None:
    """Every spanscribe_* series the Grafana dashboard queries is one the code defines."""
    root = Path(__file__).resolve().parents[2]
    dash = (root / "helm" / "spanscribe" / "dashboards" / "spanscribe-overview.json").read_text()
    used = set(re.findall(r"spanscribe_[a-z_]+", dash))
    code = ""
    for pkg in ("spanscribe", "streams", "edge_capture"):
        for p in (root / pkg).rglob("*.py"):
            code += p.read_text()
    defined = set(re.findall(r'"(spanscribe_[a-z_]+)"', code))
    # histograms and counters expose suffixed series; the dashboard may query those
    missing = {m for m in used if m not in defined and re.sub(r"_(bucket|sum|count)$", "", m) not in defined}
    assert not missing, f"dashboard queries metrics the code never defines: {sorted(missing)}"
