"""Offline validation of the Kubernetes manifests under deploy/: `cargo xtask manifests`, and a
step of `cargo xtask test` (docs/ops/deploy.md, "Validation"). Runs in the project's virtual
environment `.freshplan/venv-manifests` (xtask/manifests/requirements.txt); needs no network and
no cluster.

1. A self-check first: broken variants of the example overlay (a wrong type, an unknown field in
   each schema family, drifted alert rules, a variable the service does not read, ...) must each
   be rejected, so the validation cannot pass by validating nothing.
2. Every YAML file under deploy/ parses (duplicate keys fail) and is part of a kustomization.
3. Every kustomization is rendered by the real kustomize when the machine has one (`kustomize`,
   or `kubectl kustomize`, v5 or newer) and by `render` below, a renderer of the subset the
   manifests use; when both ran, their documents must be equal.
4. Every rendered document is validated strictly (an unknown field fails): Kubernetes kinds
   against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate` (the oldest and the
   newest supported Kubernetes), KEDA and Prometheus Operator kinds with the pydantic models of
   `cloudcoil-models-*` (and a round trip, since the models ignore unknown fields), the
   CloudNativePG Cluster against cnpg-cluster.schema.yaml. A kind with none of these fails.
5. Cross-checks that tie the manifests to each other and to the code: references resolve, the
   PrometheusRule equals docs/ops/alerts.yml, every variable is one config.rs reads, probes name
   real routes, the grace period covers the drain, queries name real metrics, and more.

Usage: python validate.py WORKSPACE_ROOT
"""

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pydantic
import referencing
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring
from kubernetes_validate import utils as kv_utils

# The oldest Kubernetes the manifests support (the preStop `sleep` action is on by default from
# 1.30) and the newest whose schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.30", "1.37")
# API versions validated against the Kubernetes schemas.
CORE_API_VERSIONS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "networking.k8s.io/v1",
    "autoscaling/v2",
    "rbac.authorization.k8s.io/v1",
}
# Custom resources with a pydantic model.
MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): monitoring.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}
CNPG_CLUSTER = ("postgresql.cnpg.io/v1", "Cluster")
# Keys of the Secret CloudNativePG creates for the database owner, `<cluster>-app`.
CNPG_APP_SECRET_KEYS = {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass"}
# Secrets the operator of the installation creates (docs/ops/deploy.md, "Secrets"), with the
# keys the manifests may read (None: any, e.g. a TLS secret the ingress controller reads).
EXTERNAL_SECRETS = {
    "freshplan-leads": {"unsubscribe-secret", "smtp-url"},
    "freshplan-leads-tls": None,
}
# Variables the service must never read from a ConfigMap or a literal: they carry credentials.
SECRET_VARIABLES = {
    "DATABASE_URL",
    "FRESHPLAN_UNSUBSCRIBE_SECRET",
    "FRESHPLAN_SMTP_URL",
    "FRESHPLAN_DB_USER",
    "FRESHPLAN_DB_PASSWORD",
}
# Variables the container has that config.rs does not list: tracing's filter, and the two parts
# of the app secret that deployment.yaml expands into FRESHPLAN_DATABASE_READ_URL.
OTHER_VARIABLES = {"DATABASE_URL", "RUST_LOG", "FRESHPLAN_DB_USER", "FRESHPLAN_DB_PASSWORD"}
# What the built-in renderer understands of a kustomization.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Connections a database needs besides the service's: superuser_reserved_connections (3), the
# operator's and the exporter's, a migration, an operator at a psql prompt.
DATABASE_RESERVE = 10


class Invalid(Exception):
    """A manifest that cannot be loaded or rendered."""


class _Loader(yaml.SafeLoader):
    """YAML with duplicate keys refused (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise Invalid(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_all(path):
    try:
        return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]
    except (yaml.YAMLError, Invalid) as e:
        raise Invalid(f"{path}: {e}") from None


def label(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def ident(doc):
    meta = doc.get("metadata") or {}
    return (doc.get("apiVersion"), doc.get("kind"), meta.get("namespace"), meta.get("name"))


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------


def render(directory, used=None):
    """The documents of the kustomization in `directory`: resources (files and kustomization
    directories), strategic-merge patches (maps merge, lists of custom resources are replaced,
    `null` deletes), JSON 6902 patches with a kind/name target, `images`, `namespace`. Anything
    else is refused, so this never renders differently from kustomize in silence. `used`
    collects the files read."""
    used = set() if used is None else used
    path = directory / "kustomization.yaml"
    used.add(path.resolve())
    (kustomization,) = load_all(path)
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise Invalid(
            f"{path}: {', '.join(sorted(unknown))}: the built-in renderer supports only "
            f"{', '.join(sorted(KUSTOMIZATION_FIELDS))} (install kustomize v5, or extend it)"
        )
    docs = []
    for entry in kustomization.get("resources", []):
        resource = directory / entry
        if resource.is_dir():
            docs += render(resource, used)
        else:
            used.add(resource.resolve())
            docs += load_all(resource)
    for patch in kustomization.get("patches", []):
        apply_patch(directory, patch, docs, used)
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            doc["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        set_image(docs, image)
    return docs


def apply_patch(directory, patch, docs, used):
    target = patch.get("target")
    if target is not None and set(target) - {"kind", "name"}:
        raise Invalid(f"{directory}: a patch target by {sorted(target)}: only kind and name")
    if "path" in patch:
        path = directory / patch["path"]
        used.add(path.resolve())
        bodies = load_all(path)
    else:
        bodies = [yaml.load(patch["patch"], Loader=_Loader)]
    for body in bodies:
        if isinstance(body, list):
            if target is None:
                raise Invalid(f"{directory}: a JSON 6902 patch needs a target")
            doc = find_target(docs, target["kind"], target["name"], directory)
            json_patch(doc, body, directory)
        else:
            kind = (target or {}).get("kind", body.get("kind"))
            name = (target or {}).get("name", body["metadata"]["name"])
            doc = find_target(docs, kind, name, directory)
            core = doc["apiVersion"] in CORE_API_VERSIONS
            merge(doc, body, (), core, directory)


def find_target(docs, kind, name, directory):
    found = [d for d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]
    if len(found) != 1:
        raise Invalid(f"{directory}: a patch of {kind}/{name} matches {len(found)} documents")
    return found[0]


def merge(target, patch, path, core, directory):
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise Invalid(f"{directory}: patch directive {key} at {path}: not supported")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value, path + (key,), core, directory)
        elif isinstance(value, list) and core:
            # kustomize merges lists of Kubernetes kinds by their merge key (containers by
            # name, ...); refuse rather than replace.
            raise Invalid(
                f"{directory}: a strategic-merge patch of the list {'.'.join(map(str, path + (key,)))} "
                "of a Kubernetes kind needs the real kustomize (or a JSON 6902 patch)"
            )
        else:
            target[key] = copy.deepcopy(value)


def json_patch(doc, operations, directory):
    for operation in operations:
        op, pointer = operation["op"], operation["path"]
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        parent = doc
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1]
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(index, copy.deepcopy(operation["value"]))
                elif op == "replace":
                    parent[index] = copy.deepcopy(operation["value"])
                elif op == "remove":
                    del parent[index]
                else:
                    raise Invalid(f"{directory}: JSON patch op {op}: not supported")
            elif op == "add" or (op == "replace" and last in parent):
                parent[last] = copy.deepcopy(operation["value"])
            elif op == "remove" and last in parent:
                del parent[last]
            else:
                raise Invalid(f"{directory}: JSON patch {op} {pointer}: no such path")
        except (KeyError, IndexError, ValueError, TypeError):
            raise Invalid(f"{directory}: JSON patch {op} {pointer}: no such path") from None


def set_image(docs, image):
    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        replace(container)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    def replace(container):
        current = container.get("image", "")
        name = re.split(r"[@]", current)[0]
        name = re.sub(r":[^/:]*$", "", name)
        if name != image["name"]:
            return
        tag = re.search(r":([^/:@]*)$", current.split("@")[0])
        new = image.get("newName", name)
        if "digest" in image:
            new += "@" + image["digest"]
        elif "newTag" in image:
            new += ":" + str(image["newTag"])
        elif tag:
            new += ":" + tag.group(1)
        container["image"] = new

    for doc in docs:
        visit(doc)


def find_kustomize():
    """The real kustomize as a command prefix and its version, or (None, why not)."""
    kustomize = shutil.which("kustomize")
    if kustomize:
        out = subprocess.run([kustomize, "version"], capture_output=True, text=True)
        version = out.stdout.strip().split()[-1] if out.stdout.strip() else ""
        if kustomize_major(version) >= 5:
            return [kustomize, "build"], f"kustomize {version}"
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True
        )
        try:
            version = json.loads(out.stdout).get("kustomizeVersion", "")
        except json.JSONDecodeError:
            version = ""
        if kustomize_major(version) >= 5:
            return [kubectl, "kustomize"], f"kubectl kustomize {version}"
        return None, f"kubectl's kustomize is {version or 'unknown'}, older than v5"
    return None, "neither kustomize nor kubectl is installed"


def kustomize_major(version):
    match = re.search(r"v?(\d+)\.\d+", version or "")
    return int(match.group(1)) if match else 0


def render_real(command, directory):
    out = subprocess.run(command + [str(directory)], capture_output=True, text=True)
    if out.returncode != 0:
        raise Invalid(f"{' '.join(command)} {directory}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def differences(expected, actual, path=()):
    """(path, what) for every difference between two documents."""
    where = ".".join(map(str, path)) or "(document)"
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                yield where + f".{key}", "unknown field"
            else:
                yield from differences(expected[key], actual[key], path + (key,))
        for key in actual:
            if key not in expected:
                yield where + f".{key}", "missing on the left"
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (a, b) in enumerate(zip(expected, actual)):
            yield from differences(a, b, path + (i,))
    elif type(expected) is not type(actual) or expected != actual:
        yield where, f"{expected!r} is {actual!r}"


def compare_renderings(real, ours):
    errors = []
    real_by, ours_by = {ident(d): d for d in real}, {ident(d): d for d in ours}
    for key in real_by.keys() - ours_by.keys():
        errors.append(f"{key}: rendered by kustomize only")
    for key in ours_by.keys() - real_by.keys():
        errors.append(f"{key}: rendered by the built-in renderer only")
    for key in real_by.keys() & ours_by.keys():
        for where, what in differences(real_by[key], ours_by[key]):
            errors.append(f"{label(real_by[key])}: {where}: kustomize vs built-in renderer: {what}")
    return errors


# ------------------------------------------------------------------------------------------
# Schemas
# ------------------------------------------------------------------------------------------


class Schemas:
    def __init__(self, here):
        schema = yaml.safe_load((here / "cnpg-cluster.schema.yaml").read_text())
        full = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) == K8S_VERSIONS[0]]
        definitions = kv_utils.schema_contents(
            f"kubernetes-json-schema/v{full[-1]}-local-strict/_definitions.json", K8S_VERSIONS[0]
        )
        registry = referencing.Registry().with_resource(
            definitions["$id"], referencing.Resource.from_contents(definitions)
        )
        self.cnpg = jsonschema.Draft202012Validator(schema, registry=registry)

    def errors(self, doc):
        """Schema errors of one document (empty when valid), and what validated it."""
        api, kind = doc.get("apiVersion"), doc.get("kind")
        if api in CORE_API_VERSIONS:
            errors = []
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(map(str, e.absolute_path)) or "(document)"
                    errors.append(f"Kubernetes {version} schema: {where}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    errors.append(e.message)
            return errors, f"Kubernetes {' and '.join(K8S_VERSIONS)} schemas (strict)"
        if (api, kind) in MODELS:
            model = MODELS[(api, kind)]
            return model_errors(model, doc), f"{model.__module__}.{model.__name__} (no extra fields)"
        if (api, kind) == CNPG_CLUSTER:
            errors = [
                f"CloudNativePG schema: {'.'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
                for e in self.cnpg.iter_errors(doc)
            ]
            return errors, "xtask/manifests/cnpg-cluster.schema.yaml (strict)"
        return [
            f"no schema for {api} {kind}: add one to xtask/manifests/validate.py before using the kind"
        ], "nothing"


def model_errors(model, doc):
    try:
        parsed = model.model_validate(doc)
    except pydantic.ValidationError as e:
        return [
            f"{model.__name__} model: {'.'.join(map(str, err['loc']))}: {err['msg']}"
            for err in e.errors()
        ]
    # The models ignore unknown fields and coerce types; what does not come back unchanged was
    # one or the other.
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [
        f"{model.__name__} model: {where}: {'unknown field' if what == 'unknown field' else 'not of its type: ' + what}"
        for where, what in differences(doc, dumped)
    ]


# ------------------------------------------------------------------------------------------
# Cross-checks
# ------------------------------------------------------------------------------------------


class Code:
    """What the manifests must agree with, read from the sources."""

    def __init__(self, root):
        read = lambda p: (root / p).read_text()  # noqa: E731
        self.variables = set(re.findall(r'"(FRESHPLAN_[A-Z0-9_]+)"', read("crates/app/src/config.rs")))
        self.routes = set(re.findall(r'\("get", "(/[^"]*)"\)', read("crates/app/src/routes.rs")))
        metrics = read("crates/metrics-prometheus/src/lib.rs")
        self.metrics = set(re.findall(r'"([a-z_]+)"', metrics))
        lib = read("crates/app/src/lib.rs")
        self.request_drain = int(number(r"\.shutdown_timeout\((\d+)\)", lib, "lib.rs"))
        self.background_drain = int(
            number(r"STOP_GRACE: Duration = Duration::from_secs\((\d+)\)",
                   read("crates/app/src/scheduler.rs"), "scheduler.rs")
        )
        self.acquire_timeout = int(
            number(r"ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs\((\d+)\)",
                   read("crates/store-postgres/src/lib.rs"), "store-postgres")
        )
        self.pool_default = int(number(r"pool_size: (\d+),", read("crates/app/src/config.rs"), "config.rs"))
        self.alert_groups = yaml.safe_load(read("docs/ops/alerts.yml"))["groups"]


def number(pattern, text, where):
    match = re.search(pattern, text)
    if not match:
        raise Invalid(f"{where}: `{pattern}` not found: the validator reads it from the code")
    return match.group(1)


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def pod_spec(doc):
    return doc.get("spec", {}).get("template", {}).get("spec", {})


def containers(doc):
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec.get("containers", [])


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_check(docs, code, namespace):
    errors = []
    err = errors.append
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    clusters = {d["metadata"]["name"]: d for d in of_kind(docs, "Cluster")}
    secrets = {f"{c}-app": CNPG_APP_SECRET_KEYS for c in clusters} | EXTERNAL_SECRETS
    services = {d["metadata"]["name"]: d for d in of_kind(docs, "Service")}
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}

    # The alert rules are docs/ops/alerts.yml's.
    rules = of_kind(docs, "PrometheusRule")
    if len(rules) != 1:
        err(f"{len(rules)} PrometheusRules: expected the one of docs/ops/alerts.yml")
    for rule in rules:
        if rule.get("spec", {}).get("groups") != code.alert_groups:
            err(f"{label(rule)}: spec.groups differs from the groups of docs/ops/alerts.yml: copy them")

    for name, deployment in deployments.items():
        where = label(deployment)
        spec = pod_spec(deployment)
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            err(f"{where}: the pod must run as non-root (securityContext.runAsNonRoot)")
        for container in containers(deployment):
            c = f"{where}: container {container.get('name')}"
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                err(f"{c}: allowPrivilegeEscalation must be false")
            if security.get("readOnlyRootFilesystem") is not True:
                err(f"{c}: readOnlyRootFilesystem must be true")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                err(f"{c}: capabilities must drop ALL")
            if "memory" not in container.get("resources", {}).get("limits", {}):
                err(f"{c}: no memory limit")
            # Configuration: every variable is one the service reads, secrets from Secrets.
            variables = {}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref not in configmaps:
                    err(f"{c}: envFrom names the ConfigMap {ref}, which is not in the manifests")
                    continue
                variables.update({k: f"ConfigMap {ref}" for k in configmaps[ref]})
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    keys = secrets.get(ref.get("name"), set())
                    if ref.get("name") not in secrets or (keys is not None and ref.get("key") not in keys):
                        err(f"{c}: {env['name']} reads key {ref.get('key')} of Secret {ref.get('name')}, "
                            "neither the CloudNativePG app secret nor one docs/ops/deploy.md lists")
                    variables[env["name"]] = "Secret"
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    if ref.get("key") not in configmaps.get(ref.get("name"), {}):
                        err(f"{c}: {env['name']} reads a missing ConfigMap key {ref}")
                    variables[env["name"]] = "ConfigMap"
                else:
                    variables[env["name"]] = "a literal value"
            for variable, origin in variables.items():
                if variable not in code.variables | OTHER_VARIABLES:
                    err(f"{c}: {variable} is not read by crates/app/src/config.rs (a typo?)")
                if variable in SECRET_VARIABLES and origin != "Secret":
                    err(f"{c}: {variable} carries credentials: take it from a Secret, not {origin}")
            if container in spec.get("containers", []) and "DATABASE_URL" not in variables:
                err(f"{c}: no DATABASE_URL")

        serving = spec.get("containers", [])
        ports = {p.get("name") for c in serving for p in c.get("ports", [])}
        for container in serving:
            c = f"{where}: container {container.get('name')}"
            probes = {k: container.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")}
            for kind, probe in probes.items():
                path = ((probe or {}).get("httpGet") or {}).get("path")
                if probe is None:
                    err(f"{c}: no {kind}")
                elif path not in code.routes:
                    err(f"{c}: the {kind} asks {path}, which is no route of crates/app/src/routes.rs")
                elif probe["httpGet"].get("port") not in ports:
                    err(f"{c}: the {kind} asks port {probe['httpGet'].get('port')}, no named container port")
            live = ((probes["livenessProbe"] or {}).get("httpGet") or {}).get("path")
            if live != "/health/live":
                err(f"{c}: the liveness probe must be /health/live: {live} restarts every pod "
                    "when the database fails over")
            ready = probes["readinessProbe"] or {}
            if (ready.get("httpGet") or {}).get("path") != "/health/ready":
                err(f"{c}: the readiness probe must be /health/ready")
            if ready.get("timeoutSeconds", 1) <= code.acquire_timeout:
                err(f"{c}: the readiness timeout must exceed the pool's {code.acquire_timeout} s "
                    "acquire timeout, or a database outage times out instead of answering 503")
            # The grace period covers the preStop sleep and both drains of the code.
            sleep = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
            needed = sleep + code.request_drain + code.background_drain
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < needed:
                err(f"{where}: terminationGracePeriodSeconds {grace} < preStop {sleep} s + request drain "
                    f"{code.request_drain} s + background drain {code.background_drain} s = {needed} s")
            if sleep <= 0:
                err(f"{c}: no preStop sleep: the pod gets SIGTERM while still an endpoint")

        # Scaling: the ScaledObject owns the count.
        scalers = [s for s in of_kind(docs, "ScaledObject")
                   if s["spec"]["scaleTargetRef"].get("name") == name]
        if len(scalers) != 1:
            err(f"{where}: {len(scalers)} ScaledObjects scale it: expected one")
            continue
        scaler = scalers[0]["spec"]
        if "replicas" in deployment["spec"]:
            err(f"{where}: spec.replicas is set, but {label(scalers[0])} owns the count "
                "(every apply would reset a scaled-out Deployment)")
        low, high = scaler.get("minReplicaCount", 0), scaler.get("maxReplicaCount", 100)
        if low < 2:
            err(f"{label(scalers[0])}: minReplicaCount {low}: at least 2, one per node")
        if high < low:
            err(f"{label(scalers[0])}: maxReplicaCount {high} < minReplicaCount {low}")
        for trigger in scaler.get("triggers", []):
            query = trigger.get("metadata", {}).get("query", "")
            for metric in re.findall(r"\b([a-z_]+)\{", query):
                if metric not in code.metrics:
                    err(f"{label(scalers[0])}: trigger {trigger.get('name')} queries {metric}, "
                        "which crates/metrics-prometheus does not export")
            for service in re.findall(r'service="([^"]+)"', query):
                if service not in services:
                    err(f"{label(scalers[0])}: trigger {trigger.get('name')} selects service={service}, not a Service here")
            for space in re.findall(r'namespace="([^"]+)"', query):
                if namespace and space != namespace:
                    err(f"{label(scalers[0])}: trigger {trigger.get('name')} selects namespace={space}, "
                        f"but the manifests are in {namespace}")
        for pdb in of_kind(docs, "PodDisruptionBudget"):
            if selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels(deployment)):
                if pdb["spec"].get("maxUnavailable", low) >= low or pdb["spec"].get("minAvailable", 0) >= low:
                    err(f"{label(pdb)}: with {low} replicas at least one must stay available")
        # Connections: every replica's pool and listener fit the database.
        pool = int(configmap_value(configmaps, "FRESHPLAN_POOL_SIZE") or code.pool_default)
        surge = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
        surge = surge if isinstance(surge, int) else 1
        for cluster in clusters.values():
            limit = int(cluster["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", "100"))
            needed = (high + surge) * (pool + 1) + DATABASE_RESERVE
            if limit < needed:
                err(f"{label(cluster)}: max_connections {limit} < ({high} replicas + {surge} surge) × "
                    f"({pool} pooled + 1 listener) + {DATABASE_RESERVE} = {needed}")

    for service in services.values():
        targets = [d for d in deployments.values() if selects(service["spec"].get("selector"), pod_labels(d))]
        if not targets:
            err(f"{label(service)}: its selector matches no Deployment's pods")
        for port in service["spec"].get("ports", []):
            names = {p.get("name") for d in targets for c in pod_spec(d).get("containers", []) for p in c.get("ports", [])}
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                err(f"{label(service)}: targetPort {port['targetPort']} is no container port")
    for monitor in of_kind(docs, "ServiceMonitor"):
        matched = [s for s in services.values()
                   if selects(monitor["spec"]["selector"].get("matchLabels"), s["metadata"].get("labels", {}))]
        if not matched:
            err(f"{label(monitor)}: its selector matches no Service")
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("port") not in {p.get("name") for s in matched for p in s["spec"]["ports"]}:
                err(f"{label(monitor)}: endpoint port {endpoint.get('port')} is no port of the Service")
            if endpoint.get("path", "/metrics") not in code.routes:
                err(f"{label(monitor)}: scrapes {endpoint.get('path')}, which is no route")
    for monitor in of_kind(docs, "PodMonitor"):
        cluster = monitor["spec"]["selector"].get("matchLabels", {}).get("cnpg.io/cluster")
        if cluster not in clusters:
            err(f"{label(monitor)}: selects cnpg.io/cluster={cluster}, not a Cluster here")
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for entry in rule.get("http", {}).get("paths", []):
                backend = entry["backend"]["service"]
                service = services.get(backend["name"])
                if service is None or backend["port"].get("name") not in {p.get("name") for p in service["spec"]["ports"]}:
                    err(f"{label(ingress)}: {entry['path']} routes to {backend}, no Service port")
                exposed = [r for r in code.routes if r.startswith(("/metrics", "/health"))
                           and (r == entry["path"] or (entry.get("pathType") == "Prefix" and r.startswith(entry["path"].rstrip("/") + "/")) or entry["path"] == "/")]
                if exposed:
                    err(f"{label(ingress)}: {entry['path']} exposes {', '.join(sorted(exposed))} (no token protects them)")
        public = configmap_value(configmaps, "FRESHPLAN_PUBLIC_URL")
        hosts = {rule.get("host") for rule in ingress["spec"].get("rules", [])}
        if public and re.sub(r"^https?://([^/:]+).*$", r"\1", public) not in hosts:
            err(f"{label(ingress)}: hosts {sorted(hosts)} do not include FRESHPLAN_PUBLIC_URL's {public}")
    for cluster in clusters.values():
        spec = cluster["spec"]
        sync = spec.get("postgresql", {}).get("synchronous")
        if not sync:
            err(f"{label(cluster)}: no synchronous replication: a failover could lose acknowledged writes")
        elif sync.get("dataDurability", "required") == "required" and spec["instances"] < sync["number"] + 2:
            err(f"{label(cluster)}: {spec['instances']} instances with {sync['number']} synchronous: losing "
                "one standby would stop every write")
    return errors


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def configmap_value(configmaps, key):
    for data in configmaps.values():
        if key in data:
            return data[key]
    return None


# ------------------------------------------------------------------------------------------
# The whole check
# ------------------------------------------------------------------------------------------


def validate_set(docs, schemas, code, namespace, report=None):
    errors = []
    for doc in docs:
        found, how = schemas.errors(doc)
        errors += [f"{label(doc)}: {e}" for e in found]
        if report is not None:
            report.append(f"{label(doc)}: {how}")
    try:
        return errors + cross_check(docs, code, namespace)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, StopIteration) as e:
        # A document too broken for the cross-checks (its schema errors say why): still a failure.
        return errors + [f"cross-checks could not read the manifests: {type(e).__name__}: {e}"]


def broken_variants():
    """(what, change, a text the rejection must contain): each must fail validation."""

    def first(kind):
        return lambda docs: next(d for d in docs if d["kind"] == kind)

    deployment, scaled, cluster = first("Deployment"), first("ScaledObject"), first("Cluster")
    serving = lambda docs: pod_spec(deployment(docs))["containers"][0]  # noqa: E731

    def setter(get, value):
        return lambda docs: get(docs).update(value)

    return [
        ("a count that is not a number", lambda d: deployment(d)["spec"].update(replicas="three"),
         "'three' is not of type"),
        ("an unknown field in a probe", lambda d: serving(d)["livenessProbe"]["httpGet"].update(paht="/"),
         "'paht' was unexpected"),
        ("a KEDA count that is not a number", lambda d: scaled(d)["spec"].update(minReplicaCount="two"),
         "minReplicaCount"),
        ("an unknown field in a KEDA trigger", lambda d: scaled(d)["spec"]["triggers"][0].update(metdata={}),
         "triggers.0.metdata: unknown field"),
        ("an unknown field in a ServiceMonitor endpoint",
         lambda d: first("ServiceMonitor")(d)["spec"]["endpoints"][0].update(intervall="15s"),
         "intervall: unknown field"),
        ("a CloudNativePG count that is not a number", lambda d: cluster(d)["spec"].update(instances="three"),
         "'three' is not of type 'integer'"),
        ("an unknown CloudNativePG field", lambda d: cluster(d)["spec"]["postgresql"].update(synchronus={}),
         "'synchronus' was unexpected"),
        ("alert rules that drifted from docs/ops/alerts.yml",
         lambda d: first("PrometheusRule")(d)["spec"]["groups"][0]["rules"][0].update({"for": "1m"}),
         "docs/ops/alerts.yml"),
        ("a variable the service does not read",
         setter(lambda d: first("ConfigMap")(d)["data"], {"FRESHPLAN_AUTH_JWKS_URL": "https://x"}),
         "FRESHPLAN_AUTH_JWKS_URL is not read"),
        ("a kind without a schema",
         lambda d: d.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
         "no schema for example.com/v1 Widget"),
        ("a grace period shorter than the drain",
         lambda d: pod_spec(deployment(d)).update(terminationGracePeriodSeconds=30),
         "terminationGracePeriodSeconds 30"),
        ("a liveness probe that asks the database",
         lambda d: serving(d)["livenessProbe"]["httpGet"].update(path="/health/ready"),
         "liveness probe must be /health/live"),
    ]


def self_check(docs, schemas, code, namespace):
    if validate_set(docs, schemas, code, namespace):
        return ["self-check not run: the overlay itself is invalid (see below)"], []
    failures, rejections = [], []
    for what, change, expected in broken_variants():
        broken = copy.deepcopy(docs)
        change(broken)
        errors = validate_set(broken, schemas, code, namespace)
        matching = [e for e in errors if expected in e]
        if matching:
            rejections.append(f"{what}: {matching[0]}")
        else:
            failures.append(
                f"self-check: {what} was not rejected with `{expected}`"
                + (f" (errors: {errors})" if errors else " (no error at all)")
            )
    return failures, rejections


def main():
    started = time.monotonic()
    root = Path(sys.argv[1]).resolve()
    deploy = root / "deploy"
    here = Path(__file__).resolve().parent
    schemas, code = Schemas(here), Code(root)
    command, kustomize = find_kustomize()
    if command is None:
        print(f"xtask: no kustomize v5 ({kustomize}): rendering with the built-in renderer only")
    directories = sorted(p.parent for p in deploy.rglob("kustomization.yaml"))
    errors, used, rendered, incomplete = [], set(), {}, False
    for directory in directories:
        rel = directory.relative_to(root)
        namespace = load_all(directory / "kustomization.yaml")[0].get("namespace")
        try:
            ours = render(directory, used)
        except Invalid as e:
            errors.append(f"{rel}: {e}")
            ours, incomplete = None, True
        if command is not None:
            try:
                docs = render_real(command, directory)
            except Invalid as e:
                errors.append(f"{rel}: {e}")
                continue
            if ours is None:
                how = f"rendered by {kustomize} (the built-in renderer refused it)"
            else:
                mismatch = compare_renderings(docs, ours)
                errors += [f"{rel}: {e}" for e in mismatch]
                how = f"rendered by {kustomize} and by the built-in renderer: " + (
                    "different" if mismatch else "equal"
                )
        elif ours is None:
            continue
        else:
            how, docs = "rendered by the built-in renderer", ours
        rendered[directory] = (docs, namespace, how)

    overlays = [d for d in rendered if "overlays" in d.parts]
    if not overlays:
        errors.append("deploy/overlays: no overlay to self-check against")
    else:
        docs, namespace, _ = rendered[overlays[0]]
        failures, rejections = self_check(docs, schemas, code, namespace)
        errors += failures
        if not failures:
            print(f"xtask: self-check: {len(rejections)} broken variants of "
                  f"{overlays[0].relative_to(root)}, each rejected:")
            for line in rejections:
                print(f"xtask:   {line}")

    for directory, (docs, namespace, how) in rendered.items():
        report = []
        found = validate_set(docs, schemas, code, namespace, report)
        errors += [f"{directory.relative_to(root)}: {e}" for e in found]
        print(f"xtask: {directory.relative_to(root)}: {len(docs)} documents, {how}"
              + (f", namespace {namespace}" if namespace else ""))
        for line in report:
            print(f"xtask:   {line}")

    for path in sorted(deploy.rglob("*")) if not incomplete else []:
        if path.suffix in (".yaml", ".yml") and path.resolve() not in used:
            errors.append(f"{path.relative_to(root)}: not part of any kustomization, so never validated")

    elapsed = time.monotonic() - started
    if errors:
        for e in errors:
            print(f"xtask: manifests: {e}")
        print(f"xtask: manifests: {len(errors)} problems ({elapsed:.1f} s)")
        return 1
    print(f"xtask: manifests valid: {len(rendered)} kustomizations, cross-checks passed ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
