#!/usr/bin/env python3
"""The checks of scripts/validate-k8s.sh that need reading the rendered manifests as data.

    validate-k8s.py OUT OVERLAY=RENDERED.yaml...

For each rendered overlay it writes OUT/<overlay>/core.yaml (the Kubernetes objects, for
kubernetes-validate), and, when the overlay has them, OUT/<overlay>/rules/ (the PrometheusRules'
groups with a copy of their unit tests, for promtool) and OUT/<overlay>/dashboard-rules.yaml
(the dashboard's queries as recording rules, so that promtool parses them). It checks, and
reports every problem before it exits non-zero:

- the custom resources: KEDA's and the Prometheus Operator's against their schemas (the
  cloudcoil models published on PyPI, generated from the CRDs; unknown fields refused), the
  RabbitMQ operators' against the fields of their CRDs written out below (no schema package
  exists for them);
- the RabbitMQ topology against queues/src/topology.rs (names; queues declared with their type
  alone, every setting that may change being a policy's, and each queue's policy placing its
  leader; the policies' definitions are checked against queues/src/policies.rs by a unit test
  of the queues crate); the broker users, each User with its Permission (their rights are
  checked against queues/src/permissions.rs by another unit test of the queues crate);
- what k8s/README.md promises: the restricted pod settings, no `replicas` where KEDA scales,
  PDBs with maxUnavailable, the migrate Job named after the release, the schema version equal
  to the newest migration, the database connection budget, a runbook section and a unit test
  for every alert, the dashboard's uid.
"""

import inspect
import json
import pathlib
import re
import sys
import typing

import pydantic
import yaml
from cloudcoil import apimachinery
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prometheus

ROOT = pathlib.Path(__file__).resolve().parent.parent
CUSTOM_GROUPS = {"keda.sh", "monitoring.coreos.com", "rabbitmq.com"}

# The connection budget of k8s/README.md ("Scale"): PostgreSQL's default max_connections, less
# what superusers keep, the migrate Job (one pool), two operator commands and KEDA's trigger.
MAX_CONNECTIONS = 100
SUPERUSER_RESERVED = 3
KEDA_CONNECTIONS = 2
OPERATOR_COMMANDS = 2

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


# --- custom resources with a published schema -------------------------------------------------


def strict(model: type, done: set) -> None:
    """Refuses unknown fields in `model` and every model it contains (the CRDs prune them
    silently, so a misspelt field would be lost without a word)."""
    if model in done:
        return
    done.add(model)
    for field in model.model_fields.values():
        for nested in nested_models(field.annotation):
            strict(nested, done)
    model.model_config["extra"] = "forbid"
    model.model_rebuild(force=True)


def nested_models(annotation) -> list:
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


SCHEMAS = {
    ("keda.sh", "ScaledObject"): keda.ScaledObject,
    ("keda.sh", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com", "PodMonitor"): prometheus.PodMonitor,
    ("monitoring.coreos.com", "PrometheusRule"): prometheus.PrometheusRule,
}
_done: set = set()
for _model in list(SCHEMAS.values()) + [apimachinery.ObjectMeta]:
    strict(_model, _done)

# --- the RabbitMQ operators' resources: their CRDs' fields (rabbitmq.com/v1beta1) -------------

CLUSTER_REFERENCE = {"name": str, "namespace": str, "connectionSecret": dict}
RABBITMQ = {
    "RabbitmqCluster": (
        [],
        {"replicas": int, "image": str, "imagePullSecrets": list, "service": dict,
         "persistence": {"storageClassName": str, "storage": str}, "resources": dict,
         "affinity": dict, "tolerations": list, "tls": dict, "override": dict,
         "rabbitmq": {"additionalPlugins": list, "additionalConfig": str, "advancedConfig": str,
                      "envConfig": str, "erlangInetConfig": str},
         "skipPostDeploySteps": bool, "terminationGracePeriodSeconds": int,
         "secretBackend": dict, "delayStartSeconds": int, "autoEnableAllFeatureFlags": bool},
    ),
    "Queue": (
        ["name", "rabbitmqClusterReference"],
        {"name": str, "vhost": str, "type": str, "durable": bool, "autoDelete": bool,
         "deleteIfEmpty": bool, "deleteIfUnused": bool, "arguments": dict,
         "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
    "Exchange": (
        ["name", "rabbitmqClusterReference"],
        {"name": str, "vhost": str, "type": ("direct", "fanout", "headers", "topic"),
         "durable": bool, "autoDelete": bool, "arguments": dict,
         "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
    "Binding": (
        ["rabbitmqClusterReference"],
        {"vhost": str, "source": str, "destination": str, "destinationType": ("exchange", "queue"),
         "routingKey": str, "arguments": dict, "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
    "Policy": (
        ["name", "pattern", "definition", "rabbitmqClusterReference"],
        {"name": str, "vhost": str, "pattern": str,
         "applyTo": ("queues", "classic_queues", "quorum_queues", "exchanges", "all"),
         "priority": int, "definition": dict, "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
    "User": (
        ["rabbitmqClusterReference"],
        {"tags": [("management", "policymaker", "monitoring", "administrator")],
         "importCredentialsSecret": {"name": str},
         "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
    "Permission": (
        ["vhost", "permissions", "rabbitmqClusterReference"],
        {"user": str, "userReference": {"name": str}, "vhost": str,
         "permissions": {"configure": str, "write": str, "read": str},
         "rabbitmqClusterReference": CLUSTER_REFERENCE},
    ),
}


def check_fields(where: str, value, shape) -> None:
    if isinstance(shape, list):  # a list whose every item has the one shape given
        if not isinstance(value, list):
            problem(where, "should be a list")
            return
        for i, item in enumerate(value):
            check_fields(f"{where}[{i}]", item, shape[0])
    elif isinstance(shape, tuple):
        if value not in shape:
            problem(where, f"{value!r} is not one of {', '.join(shape)}")
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            problem(where, "should be an object")
            return
        for key, item in value.items():
            if key not in shape:
                problem(where, f"unknown field {key!r}")
            else:
                check_fields(f"{where}.{key}", item, shape[key])
    elif shape is int and isinstance(value, bool) or not isinstance(value, shape):
        problem(where, f"should be of type {shape.__name__}")


def check_rabbitmq(where: str, doc: dict) -> None:
    required, fields = RABBITMQ[doc["kind"]]
    if doc["apiVersion"] != "rabbitmq.com/v1beta1":
        problem(where, f"apiVersion {doc['apiVersion']} is not rabbitmq.com/v1beta1")
    if set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        problem(where, f"unknown top-level fields {sorted(set(doc) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    spec = doc.get("spec") or {}
    for name in required:
        if name not in spec:
            problem(where, f"spec.{name} is required")
    check_fields(f"{where} spec", spec, fields)
    if doc["kind"] == "Permission" and ("user" in spec) == ("userReference" in spec):
        problem(where, "spec needs exactly one of user and userReference")
    if doc["kind"] == "Permission" and not spec.get("vhost"):
        problem(where, "spec.vhost is empty")
    try:
        apimachinery.ObjectMeta.model_validate(doc.get("metadata") or {})
    except pydantic.ValidationError as e:
        problem(where, f"metadata: {e}")


def check_custom(where: str, doc: dict) -> None:
    group = doc["apiVersion"].split("/")[0]
    if group == "rabbitmq.com" and doc["kind"] in RABBITMQ:
        check_rabbitmq(where, doc)
        return
    schema = SCHEMAS.get((group, doc["kind"]))
    if schema is None:
        problem(where, "a custom resource this script knows no schema for")
        return
    try:
        schema.model_validate(doc)
    except pydantic.ValidationError as e:
        for error in e.errors():
            path = ".".join(str(p) for p in error["loc"])
            problem(where, f"{path}: {error['msg']}")


# --- the topology against queues/src/topology.rs ----------------------------------------------


def rust_constants() -> dict:
    source = (ROOT / "queues/src/topology.rs").read_text()
    strings = dict(re.findall(r'pub const (\w+): &str = "([^"]*)";', source))
    numbers = {
        name: eval(expression, {"__builtins__": {}})  # digits and '*' only, from our own source
        for name, expression in re.findall(r"pub const (\w+): i64 = ([0-9 *]+);", source)
    }
    return {**strings, **numbers}


def check_topology(overlay: str, docs: list) -> None:
    queues = {d["spec"]["name"]: d for d in docs if d["kind"] == "Queue"}
    exchanges = {d["spec"]["name"] for d in docs if d["kind"] == "Exchange"}
    if not queues and not exchanges:
        return
    rust = rust_constants()
    stage_queues = {v for k, v in rust.items() if k.endswith("_QUEUE")}
    dead_letter_exchange = rust["DEAD_LETTER_EXCHANGE"]
    dead_letter_queues = {f"{dead_letter_exchange}.{q.removeprefix('ebox.')}" for q in stage_queues}
    want_exchanges = {v for k, v in rust.items() if k.endswith("_EXCHANGE")}
    where = f"{overlay}: topology"
    if exchanges != want_exchanges:
        problem(where, f"exchanges {sorted(exchanges)} differ from topology.rs's {sorted(want_exchanges)}")
    if set(queues) != stage_queues | dead_letter_queues:
        problem(where, f"queues {sorted(queues)} differ from topology.rs's {sorted(stage_queues | dead_letter_queues)}")
    for name, queue in queues.items():
        arguments = queue["spec"].get("arguments") or {}
        if queue["spec"].get("type") != "quorum" or not queue["spec"].get("durable"):
            problem(where, f"{name} is not a durable quorum queue")
        # A queue's arguments can never change (a different declaration is refused with 406):
        # dead-lettering, limits and bounds are policies (policies.yaml), as topology.rs has it.
        if arguments:
            problem(where, f"{name} is declared with arguments {arguments}: set them by policy (queues/src/policies.rs)")
    for binding in (d for d in docs if d["kind"] == "Binding"):
        spec = binding["spec"]
        if spec.get("source") not in exchanges or spec.get("destination") not in queues:
            problem(where, f"binding {binding['metadata']['name']} joins what is not declared")
    # RabbitMQ applies to a queue only the matching policy of highest priority (no merging):
    # that one must place the leader.
    policies = [d for d in docs if d["kind"] == "Policy"]
    for name in queues:
        matching = [p for p in policies if re.search(p["spec"]["pattern"], name)]
        applied = max(matching, key=lambda p: p["spec"].get("priority", 0), default=None)
        if applied is None or applied["spec"]["definition"].get("queue-leader-locator") != "balanced":
            problem(where, f"the policy applied to {name} does not spread leaders (queue-leader-locator: balanced)")


def check_users(overlay: str, docs: list) -> None:
    """Each User has its Permission and each Permission names a rendered User (the rights
    themselves are checked against queues/src/permissions.rs by a unit test of the queues
    crate)."""
    users = {d["metadata"]["name"] for d in docs if d["kind"] == "User"}
    granted = {(d["spec"].get("userReference") or {}).get("name") for d in docs if d["kind"] == "Permission"}
    for name in sorted(users - granted):
        problem(f"{overlay}: User {name}", "has no Permission")
    for name in sorted(granted - users - {None}):
        problem(f"{overlay}: a Permission", f"names the User {name}, which is not rendered")


# --- what k8s/README.md promises --------------------------------------------------------------


def pod_specs(docs: list):
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield f"{d['kind']} {d['metadata']['name']}", d["spec"]["template"]["spec"]


def check_pods(overlay: str, docs: list) -> None:
    for where, spec in pod_specs(docs):
        where = f"{overlay}: {where}"
        if spec.get("automountServiceAccountToken") is not False:
            problem(where, "automountServiceAccountToken is not false")
        security = spec.get("securityContext") or {}
        if security.get("runAsNonRoot") is not True or (security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problem(where, "the pod is not runAsNonRoot with the RuntimeDefault seccomp profile")
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            c = container.get("securityContext") or {}
            if c.get("allowPrivilegeEscalation") is not False or "ALL" not in (c.get("capabilities") or {}).get("drop", []):
                problem(where, f"container {container['name']} may escalate or keeps capabilities (restricted)")
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    if not any(n["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted" for n in namespaces):
        problem(overlay, "no Namespace enforces the restricted Pod Security Standard")


def check_scaling(overlay: str, docs: list) -> None:
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name, d in deployments.items():
        if not d["spec"]["template"]["spec"].get("topologySpreadConstraints"):
            problem(f"{overlay}: Deployment {name}", "no topology spread constraints")
    for scaled in (d for d in docs if d["kind"] == "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problem(f"{overlay}: ScaledObject {scaled['metadata']['name']}", f"scales {target}, which is not rendered")
        elif "replicas" in deployments[target]["spec"]:
            problem(f"{overlay}: Deployment {target}", "says `replicas` although KEDA scales it")
        if not scaled["spec"].get("fallback") or not scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior"):
            problem(f"{overlay}: ScaledObject {scaled['metadata']['name']}", "no fallback or no scaling behavior")
    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        spec = pdb["spec"]
        if "minAvailable" in spec or spec.get("maxUnavailable") != 1 or spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            problem(f"{overlay}: PodDisruptionBudget {pdb['metadata']['name']}", "not maxUnavailable: 1 with unhealthyPodEvictionPolicy: AlwaysAllow")


def check_release(overlay: str, docs: list) -> None:
    for job in (d for d in docs if d["kind"] == "Job"):
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        want = f"ebox-migrate-{tag}"
        name = job["metadata"]["name"]
        if name != want:
            problem(f"{overlay}: Job {name}", f"should be named {want}, after its image {image}")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", name):
            problem(f"{overlay}: Job {name}", "is not a valid Job name (lower case, digits, '-', '.'; 63 at most)")
        if "ttlSecondsAfterFinished" not in job["spec"]:
            problem(f"{overlay}: Job {name}", "has no ttlSecondsAfterFinished: the next apply would fail")
    newest = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))[-1].split("_")[0]
    for config in (d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("ebox-schema")):
        if config["data"].get("version") != newest:
            problem(f"{overlay}: ConfigMap ebox-schema", f"version {config['data'].get('version')} is not the newest migration, {newest} (k8s/base/kustomization.yaml)")


def check_budget(overlay: str, docs: list) -> list[str]:
    """The database connection budget of k8s/README.md, from the rendered values."""
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("ebox-config"))
    pool = int(config["data"]["EBOX_DATABASE_MAX_CONNECTIONS"])
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = deployments["ebox-api"]
    api_env = {e["name"]: e.get("value") for e in api["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    api_pool = int(api_env.get("EBOX_DATABASE_MAX_CONNECTIONS") or pool)
    api_pods = api["spec"]["replicas"] + api["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    fixed = SUPERUSER_RESERVED + pool + OPERATOR_COMMANDS * pool + KEDA_CONNECTIONS
    workers = 0
    maxima = []
    for scaled in (d for d in docs if d["kind"] == "ScaledObject"):
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        strategy = target["spec"].get("strategy", {}).get("rollingUpdate", {})
        if strategy.get("maxSurge") != 0:
            problem(f"{overlay}: Deployment {target['metadata']['name']}", "a rollout may add pods (maxSurge is not 0): the budget does not hold them")
        # A pod being replaced may hold its connections until it exits, beside its successor.
        workers += (scaled["spec"]["maxReplicaCount"] + 1) * pool
        maxima.append(scaled["spec"]["maxReplicaCount"])
    # Deployments with a fixed size besides the API (the event relay): their pool, plus the
    # relay's leader-lock connection.
    scaled_names = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"}
    fixed_size = 0
    for name, deployment in deployments.items():
        if name == "ebox-api" or name in scaled_names:
            continue
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        fixed_size += deployment["spec"].get("replicas", 1) * (int(env.get("EBOX_DATABASE_MAX_CONNECTIONS") or pool) + 1)
    total = fixed + api_pods * api_pool + workers + fixed_size
    line = (f"{overlay}: connections {SUPERUSER_RESERVED} superuser + {pool} migrate Job + "
            f"{OPERATOR_COMMANDS}x{pool} commands + {KEDA_CONNECTIONS} KEDA + {api_pods}x{api_pool} API + "
            f"({sum(maxima)} max + {len(maxima)} replacing)x{pool} workers + {fixed_size} event relay = {total} of {MAX_CONNECTIONS}")
    if total > MAX_CONNECTIONS:
        problem(overlay, f"the connection budget is exceeded: {line}")
    return [line]


def check_monitoring(overlay: str, docs: list, out: pathlib.Path) -> list[str]:
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    if not rules:
        return []
    groups = [g for r in rules for g in r["spec"]["groups"]]
    rules_dir = out / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests_path = ROOT / "k8s/components/monitoring/rules-test.yaml"
    (rules_dir / "rules-test.yaml").write_text(tests_path.read_text())
    tests = yaml.safe_load(tests_path.read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    runbook = (ROOT / "docs/runbook.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbook, re.M)}
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    for alert in alerts:
        name = alert["alert"]
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problem(f"{overlay}: alert {name}", f"no {key}")
        if annotations.get("runbook_url", "").rsplit("#", 1)[-1] not in anchors:
            problem(f"{overlay}: alert {name}", "its runbook_url names no section of docs/runbook.md")
        if name not in tested:
            problem(f"{overlay}: alert {name}", "no unit test in rules-test.yaml expects it to fire")
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    queries = []
    for config in dashboards:
        for key, text in config["data"].items():
            dashboard = json.loads(text)
            if dashboard.get("uid") != "ebox-pipeline":
                problem(f"{overlay}: dashboard {key}", "its uid is not ebox-pipeline")
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    queries.append(target["expr"].replace("$namespace", "ebox"))
    (out / "dashboard-rules.yaml").write_text(yaml.safe_dump(
        {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]}]}))
    return [f"{overlay}: {len(alerts)} alerts, each with a runbook section and a unit test; {len(queries)} dashboard queries"]


def main() -> int:
    out_root = pathlib.Path(sys.argv[1])
    notes = []
    for argument in sys.argv[2:]:
        overlay, rendered = argument.split("=", 1)
        docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
        out = out_root / overlay
        out.mkdir(parents=True, exist_ok=True)
        core = [d for d in docs if d["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
        (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
        custom = [d for d in docs if d["apiVersion"].split("/")[0] in CUSTOM_GROUPS]
        for doc in custom:
            check_custom(f"{overlay}: {doc['kind']} {doc['metadata']['name']}", doc)
        check_topology(overlay, docs)
        check_users(overlay, docs)
        check_pods(overlay, docs)
        check_scaling(overlay, docs)
        check_release(overlay, docs)
        notes += check_budget(overlay, docs)
        notes += check_monitoring(overlay, docs, out)
        kinds = sorted({d["kind"] for d in custom})
        notes.append(f"{overlay}: {len(core)} core objects; {len(custom)} custom resources checked ({', '.join(kinds)})")
    for note in notes:
        print(note)
    for p in problems:
        print(f"PROBLEM {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
