#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests in k8s/ (no cluster, no kubectl).
#
#   bash k8s/validate.sh
#
# Installs what it needs when missing (idempotent): a venv at .venv with
# kubernetes-validate and PyYAML, and Debian's prometheus package for
# promtool. Then renders the kustomizations with k8s/render.py, validates
# every object against the Kubernetes OpenAPI schemas (--strict), checks the
# alert rules with promtool and the cross-file invariants, and ends with
# `k8s: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

# --------------------------------------------------------------- tools
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import yaml' 2>/dev/null || [ ! -x .venv/bin/kubernetes-validate ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check kubernetes-validate pyyaml
fi
if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
PY=.venv/bin/python
KV=.venv/bin/kubernetes-validate

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: runs it, output to a log shown on failure
  local name="$1"; shift
  if "$@" >"$tmp/log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$tmp/log"
  fi
}

# ----------------------------------------------------- every YAML parses
check "every YAML file in k8s/ parses" "$PY" - <<'EOF'
import pathlib, sys, yaml
bad = 0
for path in sorted(pathlib.Path("k8s").rglob("*.y*ml")):
    try:
        list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        print(f"{path}: {error}"); bad += 1
sys.exit(bad)
EOF
check "dashboard.json parses" "$PY" -c 'import json; json.load(open("k8s/monitoring/dashboard.json"))'

# ----------------------------------------- render and schema-validate
# name:directory; `default` is `kubectl apply -k k8s/`.
targets=(default:k8s dev:k8s/overlays/dev prod:k8s/overlays/prod redis-sentinel:k8s/redis-sentinel)
for target in "${targets[@]}"; do
  name="${target%%:*}" dir="${target#*:}"
  check "render $dir" sh -c "'$PY' k8s/render.py '$dir' > '$tmp/$name.yaml'"
  # Custom resources (ServiceMonitor, PrometheusRule) have no schema there:
  # a warning, exit 0.
  check "kubernetes-validate --strict $dir" "$KV" --strict --quiet "$tmp/$name.yaml"
done

# ------------------------------------------------------------ alerting
check "promtool check rules k8s/monitoring/rules.yaml" promtool check rules k8s/monitoring/rules.yaml

# ------------------------------------------------ cross-file invariants
check "PrometheusRule spec equals monitoring/rules.yaml" "$PY" - <<'EOF'
import sys, yaml
rule = yaml.safe_load(open("k8s/monitoring/prometheusrule.yaml"))
rules = yaml.safe_load(open("k8s/monitoring/rules.yaml"))
sys.exit(0 if rule["spec"] == rules else "PrometheusRule .spec differs from rules.yaml")
EOF

check "rules and dashboard use only exported tollgate_* metrics" "$PY" - <<'EOF'
import re, sys
exported = {l.strip() for l in open("k8s/monitoring/exported-metrics.txt") if l.strip() and not l.startswith("#")}
bad = []
for path in ("k8s/monitoring/rules.yaml", "k8s/monitoring/dashboard.json"):
    used = set(re.findall(r"\btollgate_[a-z0-9_]+", open(path).read()))
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in exported and base not in exported:
            bad.append(f"{path}: {name}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF

check "k8s/base/envoy/envoy.yaml is identical to envoy/envoy.yaml" cmp envoy/envoy.yaml k8s/base/envoy/envoy.yaml
check "k8s/base/config/fingerprint-api.yaml is identical to src/config/default.yaml" cmp src/config/default.yaml k8s/base/config/fingerprint-api.yaml

check "rendered objects fit together (refs, ports, security)" "$PY" - "$tmp" <<'EOF'
import sys, yaml
tmp = sys.argv[1]
errors = []
for name in ("default", "dev", "prod", "redis-sentinel"):
    docs = list(yaml.safe_load_all(open(f"{tmp}/{name}.yaml")))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    def err(msg): errors.append(f"{name}: {msg}")
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "tollgate":
            err(f"{d['kind']}/{d['metadata']['name']} not in namespace tollgate")
        spec = (d.get("spec") or {}).get("template", {}).get("spec")
        if not spec:
            continue
        # Every ConfigMap/Secret a pod uses is rendered too.
        for v in spec.get("volumes") or []:
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in by:
                err(f"{d['metadata']['name']}: ConfigMap {v['configMap']['name']} missing")
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ("Secret", ref["name"]) not in by:
                    err(f"{d['metadata']['name']}: Secret {ref['name']} missing")
                elif ref:
                    data = by[("Secret", ref["name"])].get("data") or {}
                    if ref["key"] not in data:
                        err(f"Secret {ref['name']} has no key {ref['key']}")
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True \
               or sc.get("capabilities", {}).get("drop") != ["ALL"]:
                err(f"{d['metadata']['name']}/{c['name']}: securityContext not locked down")
        if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
            err(f"{d['metadata']['name']}: pod not runAsNonRoot")
    if ("Deployment", "tollgate") in by:
        dep = by[("Deployment", "tollgate")]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        drain = int(env.get("TOLLGATE_DRAIN_SECS", {}).get("value", 5))
        if pod["terminationGracePeriodSeconds"] <= 2 * drain:
            err("terminationGracePeriodSeconds must exceed 2 x TOLLGATE_DRAIN_SECS")
        if pod["securityContext"].get("runAsUser") != 65532:
            err("tollgate must run as uid 65532")
        if env["TOLLGATE_CONFIG"]["value"] != "/etc/tollgate" or not any(
                m["mountPath"] == "/etc/tollgate" and "subPath" not in m for m in c["volumeMounts"]):
            err("config must be a ConfigMap directory at /etc/tollgate (no subPath)")
        if env["TOLLGATE_LOG_FORMAT"]["value"] != "json":
            err("TOLLGATE_LOG_FORMAT must be json")
        backend = env["TOLLGATE_BACKEND"]["value"]
        if name in ("default", "prod") and (backend != "redis" or "TOLLGATE_REDIS_URL" not in env
                                            or dep["spec"]["replicas"] != 3):
            err("prod: Redis backend with 3 replicas expected")
        if name == "dev" and (backend != "memory" or dep["spec"]["replicas"] != 1
                              or by[("HorizontalPodAutoscaler", "tollgate")]["spec"]["maxReplicas"] != 1
                              or by[("PodDisruptionBudget", "tollgate")]["spec"]["minAvailable"] != 0):
            err("dev: memory backend, 1 replica, HPA max 1, PDB minAvailable 0 expected")
        # Envoy's cluster `tollgate` (STRICT_DNS tollgate:8081) needs this Service.
        svc = by.get(("Service", "tollgate"))
        if not svc or not any(p["port"] == 8081 and p.get("appProtocol") == "grpc" for p in svc["spec"]["ports"]):
            err("Service tollgate with gRPC port 8081 missing")
        envoy = yaml.safe_load(by[("ConfigMap", "envoy-config")]["data"]["envoy.yaml"])
        cluster = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "tollgate")
        addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        if (addr["address"], addr["port_value"]) != ("tollgate", 8081):
            err(f"envoy.yaml points at {addr}")
    if ("ServiceMonitor", "tollgate") in by:
        sm = by[("ServiceMonitor", "tollgate")]
        sel = sm["spec"]["selector"]["matchLabels"]
        hits = [d for d in docs if d["kind"] == "Service"
                and sel.items() <= (d["metadata"].get("labels") or {}).items()]
        if [d["metadata"]["name"] for d in hits] != ["tollgate-admin"]:
            err(f"ServiceMonitor selects {[d['metadata']['name'] for d in hits]}, not tollgate-admin")
        elif sm["spec"]["endpoints"][0]["port"] not in {p["name"] for p in hits[0]["spec"]["ports"]}:
            err("ServiceMonitor port is not a port of tollgate-admin")
        dash = by[("ConfigMap", "tollgate-dashboard")]
        if dash["metadata"]["labels"].get("grafana_dashboard") != "1":
            err("dashboard ConfigMap lacks grafana_dashboard: \"1\"")
print("\n".join(errors))
sys.exit(1 if errors else 0)
EOF

echo "k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
