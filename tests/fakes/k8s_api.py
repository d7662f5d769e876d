#!/usr/bin/env python3
"""A small, faithful fake of the Kubernetes API server for the objects the eventbus
`kubernetes` target manages: ConfigMaps, Secrets and Services (core/v1) and StatefulSets
(apps/v1), namespaced.

What it does as a real API server does:

* every object written (POST, PUT, and the result of a PATCH) is validated against
  Kubernetes' own OpenAPI schema (the `kubernetes-validate` package, strict: unknown fields
  are refused) and against a subset of the API server's semantic validation (names, labels,
  ports, quantities, selectors matching the template, volume mounts naming volumes,
  StatefulSet fields that cannot change after creation, a Service's clusterIP); a refusal is
  a 422 `Status` with `reason: Invalid` and causes, as the API server answers;
* server-side fields: uid, resourceVersion (optimistic concurrency: a stale one is a 409
  Conflict), creationTimestamp, generation (bumped on spec changes), the defaults the API
  server fills in (Service clusterIP, ports' protocol and targetPort, a StatefulSet's
  updateStrategy, podManagementPolicy, pod template defaults...), quantities printed in
  canonical form (1024Mi -> 1Gi, 0.5 -> 500m), Secret `stringData` folded into base64 `data`;
* `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` answers with the
  object's metadata only;
* JSON merge patch (`application/merge-patch+json`); other patch types get a 415;
* errors as `Status` objects: 404 NotFound (also for a namespace that does not exist),
  409 AlreadyExists / Conflict, 401 without the right bearer token;
* a StatefulSet controller: status (observedGeneration, readyReplicas, updatedReplicas,
  currentRevision, updateRevision) catches up with the spec after `--ready-after` seconds;
  with `--nats-server BIN --pod-port PORT` a "kubelet" runs pod 0 for real: the ConfigMap
  and Secret volumes are written out as files, the container's args are run with the given
  nats-server on 127.0.0.1:PORT, and the pod is ready once it accepts connections; a new
  pod template restarts it (rolling update), deleting the StatefulSet stops it.

For the tests, everything is in `--dir`:

* `port`: the port it listens on (written once listening);
* `requests.jsonl`: one line per request: method, path, query, content type, accept, body,
  status, response body, and `invalid` (the validation failures, if any);
* `objects.json`: every stored object, rewritten after each change;
* `pods.json`: the pods the kubelet runs (image, pid, revision, ready);
* `faults.json` (written by the test, read on every request): a list of
  `{"method": "POST", "path": "/apis/apps/v1/...", "status": 429, "times": 2,
  "retry_after": 1}`; a request whose method and path (prefix) match is answered with that
  status `times` times, with `Retry-After` when given.

Usage: k8s_api.py --dir DIR [--token T] [--namespaces a,b] [--ready-after S]
                  [--nats-server BIN --pod-port PORT]
"""

import argparse
import base64
import copy
import datetime
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid


def _die_with_parent():
    """In the pod process before exec: SIGKILL it when the thread that started it (the
    controller, alive as long as the fake) goes away, so no server outlives its test."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - reported to the test
    sys.stderr.write("k8s_api.py needs the kubernetes-validate package: pip install kubernetes-validate\n")
    sys.exit(3)

K8S_VERSION = "1.37"

RESOURCES = {
    # (group/version, plural): (kind, apiVersion)
    ("v1", "configmaps"): ("ConfigMap", "v1"),
    ("v1", "secrets"): ("Secret", "v1"),
    ("v1", "services"): ("Service", "v1"),
    ("apps/v1", "statefulsets"): ("StatefulSet", "apps/v1"),
}
ROUTE = re.compile(r"^/(?:api/(v1)|apis/(apps/v1))/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?$")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
SUFFIXES = {
    "": (10, 0), "n": (10, -9), "u": (10, -6), "m": (10, -3), "k": (10, 3), "M": (10, 6),
    "G": (10, 9), "T": (10, 12), "P": (10, 15), "E": (10, 18),
    "Ki": (2, 10), "Mi": (2, 20), "Gi": (2, 30), "Ti": (2, 40), "Pi": (2, 50), "Ei": (2, 60),
}
META_ACCEPT = "as=PartialObjectMetadata"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Quantities, as resource.Quantity parses and prints them


def parse_quantity(s):
    """(value as a Fraction-free (numerator, denominator) pair, format) or None."""
    if isinstance(s, (int, float)):
        s = str(s)
    if not isinstance(s, str):
        return None
    m = QUANTITY.match(s)
    if not m:
        return None
    num, suffix = m.group(1), m.group(2)
    if num.count(".") > 1 or num in (".", "+.", "-."):
        return None
    if suffix in SUFFIXES:
        base, exp = SUFFIXES[suffix]
        fmt = "BinarySI" if base == 2 else "DecimalSI"
    elif re.match(r"^[eE][-+]?[0-9]+$", suffix):
        base, exp, fmt = 10, int(suffix[1:]), "DecimalExponent"
    else:
        return None
    from fractions import Fraction
    v = Fraction(num) * (Fraction(base) ** exp)
    return v, fmt


def format_quantity(s):
    """The canonical form the API server stores and returns."""
    p = parse_quantity(s)
    if p is None:
        return s
    v, fmt = p
    from fractions import Fraction
    if v < 0:
        return s
    if fmt == "BinarySI" and v.denominator == 1 and v >= 1024:
        n = v.numerator
        for unit, shift in (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
            if n % (1 << shift) == 0:
                return f"{n >> shift}{unit}"
        return str(n)
    # DecimalSI: the largest decimal unit giving an integer, milli and below for fractions.
    # (BinarySI values that are fractional or below 1Ki print as DecimalSI, as in Kubernetes.)
    for unit, exp in (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3), ("u", -6), ("n", -9)):
        scaled = v / (Fraction(10) ** exp)
        if scaled.denominator == 1:
            return f"{scaled.numerator}{unit}"
    # Rounded up to nano units, as the API server does.
    n = -(-v.numerator * 10**9 // v.denominator)
    return f"{n}n"


def canonical_resources(res):
    for section in ("requests", "limits"):
        for k, v in list((res or {}).get(section, {}).items()):
            res[section][k] = format_quantity(v)


# ---------------------------------------------------------------------------------------------
# Validation


class Invalid(Exception):
    def __init__(self, causes, code=422, reason="Invalid"):
        super().__init__("; ".join(f"{f}: {m}" for f, m in causes))
        self.causes = causes
        self.code = code
        self.reason = reason


def schema_errors(obj):
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        text = str(e).split("\n")[0]
        return [("schema", f"{obj.get('kind')} does not match the Kubernetes {K8S_VERSION} OpenAPI schema: {text}")]
    except Exception as e:  # SchemaNotFound and the like
        return [("schema", f"cannot validate {obj.get('kind')}: {e}")]


def iana_port_name(n):
    return (isinstance(n, str) and 0 < len(n) <= 15 and re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", n)
            and "--" not in n and re.search(r"[a-z]", n))


def check_quantity(errs, path, v):
    if parse_quantity(v) is None:
        errs.append((path, f"Invalid value: {v!r}: quantities must match the regular expression "
                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))


def check_meta(errs, kind, meta, ns):
    name = meta.get("name", "")
    if not name:
        errs.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        ok = DNS_1035.match(name) if kind == "Service" else all(DNS_LABEL.match(p) for p in name.split("."))
        if kind == "StatefulSet":
            ok = DNS_LABEL.match(name) and len(name) <= 63
        if not ok or len(name) > (63 if kind == "Service" else 253):
            errs.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 name is required"))
    if meta.get("namespace") not in (None, ns):
        raise Invalid([("metadata.namespace", "the namespace of the provided object does not match the namespace sent on the request")], 400, "BadRequest")
    for k, v in (meta.get("labels") or {}).items():
        key = k.split("/")[-1]
        if not QUALIFIED_NAME.match(key) or len(key) > 63:
            errs.append((f"metadata.labels", f"Invalid value: {k!r}: name part must consist of alphanumeric characters, '-', '_' or '.'"))
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            errs.append((f"metadata.labels", f"Invalid value: {v!r}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', at most 63"))
    total = 0
    for k, v in (meta.get("annotations") or {}).items():
        key = k.split("/")[-1]
        if not QUALIFIED_NAME.match(key):
            errs.append(("metadata.annotations", f"Invalid value: {k!r}: name part must consist of alphanumeric characters"))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > 256 * 1024:
        errs.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))


def check_data(errs, obj, field):
    data = obj.get(field) or {}
    size = 0
    for k, v in data.items():
        if not CONFIG_KEY.match(k) or len(k) > 253:
            errs.append((f"{field}[{k}]", "Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"))
        size += len(v or "")
    if size > 1024 * 1024:
        errs.append((field, "Too long: must have at most 1048576 bytes"))


def check_service(errs, spec):
    ports = spec.get("ports") or []
    typ = spec.get("type", "ClusterIP")
    if typ not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errs.append(("spec.type", f"Unsupported value: {typ!r}"))
    if spec.get("clusterIP") == "None" and typ != "ClusterIP":
        errs.append(("spec.clusterIPs[0]", "Invalid value: \"None\": may only be set to 'None' for ClusterIP services"))
    if not ports and spec.get("clusterIP") != "None":
        errs.append(("spec.ports", "Required value"))
    names = set()
    for i, p in enumerate(ports):
        n = p.get("name")
        if len(ports) > 1 and not n:
            errs.append((f"spec.ports[{i}].name", "Required value"))
        if n:
            if not DNS_LABEL.match(n) or len(n) > 63:
                errs.append((f"spec.ports[{i}].name", f"Invalid value: {n!r}"))
            if n in names:
                errs.append((f"spec.ports[{i}].name", f"Duplicate value: {n!r}"))
            names.add(n)
        if not (1 <= int(p.get("port", 0)) <= 65535):
            errs.append((f"spec.ports[{i}].port", "Invalid value: must be between 1 and 65535"))
        t = p.get("targetPort")
        if isinstance(t, str) and not iana_port_name(t):
            errs.append((f"spec.ports[{i}].targetPort", f"Invalid value: {t!r}: must be an IANA_SVC_NAME"))
    for k, v in (spec.get("selector") or {}).items():
        if not LABEL_VALUE.match(v or ""):
            errs.append(("spec.selector", f"Invalid value: {v!r}"))


def check_pod_spec(errs, path, spec, claim_names):
    containers = spec.get("containers") or []
    if not containers:
        errs.append((f"{path}.containers", "Required value"))
    if spec.get("restartPolicy", "Always") != "Always":
        errs.append((f"{path}.restartPolicy", "Unsupported value: only \"Always\" is supported for a StatefulSet"))
    volumes = set()
    for i, v in enumerate(spec.get("volumes") or []):
        n = v.get("name", "")
        if not DNS_LABEL.match(n) or n in volumes:
            errs.append((f"{path}.volumes[{i}].name", f"Invalid value: {n!r}"))
        volumes.add(n)
        sources = [k for k in v if k != "name"]
        if len(sources) != 1:
            errs.append((f"{path}.volumes[{i}]", "Invalid value: must specify exactly 1 volume source"))
        ref = (v.get("configMap") or {}).get("name") or (v.get("secret") or {}).get("secretName")
        if ("configMap" in v or "secret" in v) and not ref:
            errs.append((f"{path}.volumes[{i}]", "Required value: the ConfigMap or Secret's name"))
    names = set()
    for ci, c in enumerate(containers):
        cp = f"{path}.containers[{ci}]"
        n = c.get("name", "")
        if not DNS_LABEL.match(n) or len(n) > 63 or n in names:
            errs.append((f"{cp}.name", f"Invalid value: {n!r}"))
        names.add(n)
        if not c.get("image"):
            errs.append((f"{cp}.image", "Required value"))
        pnames = set()
        for pi, p in enumerate(c.get("ports") or []):
            pn = p.get("name")
            if pn is not None:
                if not iana_port_name(pn):
                    errs.append((f"{cp}.ports[{pi}].name", f"Invalid value: {pn!r}: must be no more than 15 characters, lowercase alphanumerics and '-', with a letter"))
                if pn in pnames:
                    errs.append((f"{cp}.ports[{pi}].name", f"Duplicate value: {pn!r}"))
                pnames.add(pn)
            if not (1 <= int(p.get("containerPort", 0)) <= 65535):
                errs.append((f"{cp}.ports[{pi}].containerPort", "Invalid value: must be between 1 and 65535"))
        for ei, e in enumerate(c.get("env") or []):
            if not ENV_NAME.match(e.get("name", "")):
                errs.append((f"{cp}.env[{ei}].name", f"Invalid value: {e.get('name')!r}"))
            if "value" in e and "valueFrom" in e:
                errs.append((f"{cp}.env[{ei}].valueFrom", "Invalid value: may not be specified when `value` is not empty"))
        mounts = set()
        for mi, m in enumerate(c.get("volumeMounts") or []):
            if m.get("name") not in volumes | claim_names:
                errs.append((f"{cp}.volumeMounts[{mi}].name", f"Not found: {m.get('name')!r}"))
            mp = m.get("mountPath", "")
            if not mp.startswith("/") or mp in mounts:
                errs.append((f"{cp}.volumeMounts[{mi}].mountPath", f"Invalid value: {mp!r}"))
            mounts.add(mp)
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            for k, v in (res.get(section) or {}).items():
                check_quantity(errs, f"{cp}.resources.{section}[{k}]", v)
        for k, req in (res.get("requests") or {}).items():
            lim = (res.get("limits") or {}).get(k)
            pr, pl = parse_quantity(req), parse_quantity(lim) if lim is not None else None
            if pr and pl and pr[0] > pl[0]:
                errs.append((f"{cp}.resources.requests", f"Invalid value: {req!r}: must be less than or equal to {k} limit of {lim}"))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if pr is None:
                continue
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in pr]
            if len(handlers) != 1:
                errs.append((f"{cp}.{probe}", "Required value: must specify exactly one handler type"))
            hp = (pr.get("httpGet") or {}).get("port")
            if isinstance(hp, str) and hp not in pnames:
                errs.append((f"{cp}.{probe}.httpGet.port", f"Invalid value: {hp!r}: must be a container port name"))
            if probe == "startupProbe" and pr.get("successThreshold", 1) != 1:
                errs.append((f"{cp}.{probe}.successThreshold", "Invalid value: must be 1"))


def check_statefulset(errs, spec):
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    if not sel and not (spec.get("selector") or {}).get("matchExpressions"):
        errs.append(("spec.selector", "Invalid value: empty selector is invalid for statefulset"))
    tl = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if any(tl.get(k) != v for k, v in sel.items()):
        errs.append(("spec.template.metadata.labels", f"Invalid value: {tl!r}: `selector` does not match template `labels`"))
    if int(spec.get("replicas", 1)) < 0:
        errs.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
    if spec.get("podManagementPolicy", "OrderedReady") not in ("OrderedReady", "Parallel"):
        errs.append(("spec.podManagementPolicy", "Unsupported value"))
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") not in ("RollingUpdate", "OnDelete"):
        errs.append(("spec.updateStrategy.type", "Unsupported value"))
    sn = spec.get("serviceName")
    if sn and not DNS_1035.match(sn):
        errs.append(("spec.serviceName", f"Invalid value: {sn!r}"))
    pol = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for k in ("whenDeleted", "whenScaled"):
        if k in pol and pol[k] not in ("Retain", "Delete"):
            errs.append((f"spec.persistentVolumeClaimRetentionPolicy.{k}", f"Unsupported value: {pol[k]!r}"))
    claims = set()
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        n = (t.get("metadata") or {}).get("name", "")
        if not DNS_LABEL.match(n):
            errs.append((f"spec.volumeClaimTemplates[{i}].metadata.name", f"Invalid value: {n!r}"))
        claims.add(n)
        ts = t.get("spec") or {}
        if not ts.get("accessModes"):
            errs.append((f"spec.volumeClaimTemplates[{i}].spec.accessModes", "Required value: at least 1 access mode is required"))
        st = ((ts.get("resources") or {}).get("requests") or {}).get("storage")
        if st is None:
            errs.append((f"spec.volumeClaimTemplates[{i}].spec.resources[storage]", "Required value"))
        else:
            check_quantity(errs, f"spec.volumeClaimTemplates[{i}].spec.resources.requests[storage]", st)
        sc = ts.get("storageClassName")
        if sc is not None and not all(DNS_LABEL.match(p) for p in sc.split(".")):
            errs.append((f"spec.volumeClaimTemplates[{i}].spec.storageClassName", f"Invalid value: {sc!r}"))
    check_pod_spec(errs, "spec.template.spec", ((spec.get("template") or {}).get("spec") or {}), claims)


def validate(kind, obj, ns):
    errs = schema_errors(obj)
    meta = obj.get("metadata") or {}
    check_meta(errs, kind, meta, ns)
    if kind == "ConfigMap":
        check_data(errs, obj, "data")
    elif kind == "Secret":
        check_data(errs, obj, "data")
        check_data(errs, obj, "stringData")
    elif kind == "Service":
        check_service(errs, obj.get("spec") or {})
    elif kind == "StatefulSet":
        check_statefulset(errs, obj.get("spec") or {})
    if errs:
        raise Invalid(errs)


# ---------------------------------------------------------------------------------------------
# Defaults, as the API server fills them in


def default_probe(p):
    if not p:
        return
    for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        p.setdefault(k, v)
    if "httpGet" in p:
        p["httpGet"].setdefault("scheme", "HTTP")


class Store:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.objects = {}  # (gv, plural, ns, name) -> obj
        self.rv = 1000
        self.ips = 10
        self.node_ports = 30000
        self.changed = {}  # statefulset key -> time of its last spec change
        self.seq = 0

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def default(self, kind, obj, old):
        meta = obj.setdefault("metadata", {})
        if kind == "Secret":
            obj.setdefault("type", "Opaque")
            data = obj.setdefault("data", {}) if (obj.get("data") or obj.get("stringData")) else obj.get("data")
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(v.encode()).decode()
        elif kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if old is not None and not spec.get("clusterIP"):
                spec["clusterIP"] = old["spec"].get("clusterIP")
            if not spec.get("clusterIP"):
                self.ips += 1
                spec["clusterIP"] = f"10.96.{self.ips // 250}.{self.ips % 250 + 1}"
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
            old_ports = {p.get("name"): p for p in ((old or {}).get("spec") or {}).get("ports") or []}
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
                if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
                    prev = old_ports.get(p.get("name"), {}).get("nodePort")
                    if prev:
                        p["nodePort"] = prev
                    else:
                        self.node_ports += 1
                        p["nodePort"] = self.node_ports
                elif spec["type"] == "ClusterIP":
                    p.pop("nodePort", None)
            if spec["type"] == "LoadBalancer":
                spec.setdefault("externalTrafficPolicy", "Cluster")
                spec.setdefault("allocateLoadBalancerNodePorts", True)
            obj["status"] = {"loadBalancer": {}}
        elif kind == "StatefulSet":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
            pod = spec.setdefault("template", {}).setdefault("spec", {})
            for k, v in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst"), ("terminationGracePeriodSeconds", 30),
                         ("schedulerName", "default-scheduler"), ("securityContext", {})):
                pod.setdefault(k, v)
            for c in pod.get("containers") or []:
                image = c.get("image", "")
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
                c.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                for p in c.get("ports") or []:
                    p.setdefault("protocol", "TCP")
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    default_probe(c.get(probe))
                canonical_resources(c.get("resources"))
            for v in pod.get("volumes") or []:
                if "configMap" in v:
                    v["configMap"].setdefault("defaultMode", 420)
                if "secret" in v:
                    v["secret"].setdefault("defaultMode", 420)
            for t in spec.get("volumeClaimTemplates") or []:
                t.setdefault("apiVersion", "v1")
                t.setdefault("kind", "PersistentVolumeClaim")
                t["spec"].setdefault("volumeMode", "Filesystem")
                canonical_resources(t["spec"].get("resources"))
                t.setdefault("status", {"phase": "Pending"})
            obj["status"] = copy.deepcopy((old or {}).get("status") or {"replicas": 0, "availableReplicas": 0})
        # Server-managed metadata.
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = (old or {}).get("metadata", {}).get("creationTimestamp") or now()
        meta.pop("deletionTimestamp", None)
        if kind == "StatefulSet":
            prev = (old or {}).get("metadata", {}).get("generation", 0)
            spec_changed = old is None or old.get("spec") != obj.get("spec")
            meta["generation"] = prev + 1 if spec_changed else prev
        return obj

    def immutable(self, kind, old, new):
        errs = []
        if kind == "StatefulSet":
            allowed = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "revisionHistoryLimit"}
            o = {k: v for k, v in old["spec"].items() if k not in allowed}
            n = {k: v for k, v in new["spec"].items() if k not in allowed}
            if o != n:
                changed = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
                errs.append(("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                                     f"'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden (changed: {', '.join(changed)})"))
        if kind == "Service":
            if old["spec"].get("clusterIP") != new["spec"].get("clusterIP"):
                errs.append(("spec.clusterIPs[0]", "Invalid value: field is immutable"))
        if errs:
            raise Invalid(errs)

    def dump(self):
        items = [{"resource": f"{gv}/{plural}", "namespace": ns, "name": name, "object": obj}
                 for (gv, plural, ns, name), obj in sorted(self.objects.items())]
        write_json(os.path.join(self.args.dir, "objects.json"), items)


def write_json(path, value):
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def status_obj(code, reason, message, name=None, kind=None, causes=None):
    details = {}
    if name:
        details["name"] = name
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}


# ---------------------------------------------------------------------------------------------
# The HTTP server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None  # set in main

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")

    def do_PATCH(self):
        self.handle_one("PATCH")

    def do_DELETE(self):
        self.handle_one("DELETE")

    def handle_one(self, method):
        st = self.store
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        entry = {"method": method, "path": path, "query": query,
                 "content_type": self.headers.get("Content-Type"), "accept": self.headers.get("Accept"),
                 "authorized": None}
        try:
            entry["body"] = json.loads(raw) if raw else None
        except ValueError:
            entry["body"] = raw.decode("utf-8", "replace")
        extra_headers = {}
        try:
            code, body = self.route(method, path, entry, raw, extra_headers)
        except Invalid as e:
            entry["invalid"] = [f"{f}: {m}" for f, m in e.causes]
            code, body = e.code, status_obj(e.code, e.reason, str(e), causes=e.causes)
        except Exception as e:  # a bug in the fake: say so loudly
            entry["invalid"] = [f"fake error: {e!r}"]
            code, body = 500, status_obj(500, "InternalError", f"fake API server error: {e!r}")
        if code < 300 and META_ACCEPT in (self.headers.get("Accept") or "") and isinstance(body, dict) and "metadata" in body:
            body = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": body["metadata"]}
        out = json.dumps(body).encode()
        with st.lock:
            st.seq += 1
            entry["seq"] = st.seq
            entry["status"] = code
            entry["response"] = body
            with open(os.path.join(st.args.dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        for k, v in extra_headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)

    def fault(self, method, path, extra_headers):
        fpath = os.path.join(self.store.args.dir, "faults.json")
        try:
            with open(fpath) as f:
                faults = json.load(f)
        except (OSError, ValueError):
            return None
        for rule in faults:
            if rule.get("times", 0) <= 0:
                continue
            if rule.get("method", method).upper() != method or not path.startswith(rule.get("path", "/")):
                continue
            rule["times"] -= 1
            rule["hits"] = rule.get("hits", 0) + 1
            write_json(fpath, faults)
            code = int(rule.get("status", 429))
            if rule.get("retry_after") is not None:
                extra_headers["Retry-After"] = str(rule["retry_after"])
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(code, "Unknown")
            return code, status_obj(code, reason, rule.get("message", "the server has received too many requests and has asked us to try again later"))
        return None

    def route(self, method, path, entry, raw, extra_headers):
        st = self.store
        if st.args.token:
            ok = self.headers.get("Authorization") == f"Bearer {st.args.token}"
            entry["authorized"] = ok
            if not ok:
                return 401, status_obj(401, "Unauthorized", "Unauthorized")
        f = self.fault(method, path, extra_headers)
        if f:
            return f
        if method == "GET" and path == "/version":
            return 200, {"major": "1", "minor": K8S_VERSION.split(".")[1], "gitVersion": f"v{K8S_VERSION}.0-eventbus-fake"}
        m = ROUTE.match(path)
        if not m or (m.group(1) or m.group(2), m.group(4)) not in RESOURCES:
            return 404, status_obj(404, "NotFound", "the server could not find the requested resource")
        gv, ns, plural, name = m.group(1) or m.group(2), m.group(3), m.group(4), m.group(5)
        kind, api_version = RESOURCES[(gv, plural)]
        body = entry["body"]
        with st.lock:
            if ns not in st.args.namespaces:
                if method in ("POST", "PUT", "PATCH"):
                    return 404, status_obj(404, "NotFound", f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            key = (gv, plural, ns, name)
            old = st.objects.get(key) if name else None
            if method == "GET" and name is None:
                items = [o for (g, p, n, _), o in sorted(st.objects.items()) if (g, p, n) == (gv, plural, ns)]
                return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": str(st.rv)}, "items": items}
            if method == "GET":
                if old is None:
                    return 404, status_obj(404, "NotFound", f'{plural}{"." + gv.split("/")[0] if "/" in gv else ""} "{name}" not found', name=name, kind=plural)
                return 200, old
            if method == "DELETE":
                if name is None:
                    return 405, status_obj(405, "MethodNotAllowed", "deletecollection is not served by this fake")
                if old is None:
                    return 404, status_obj(404, "NotFound", f'{plural} "{name}" not found', name=name, kind=plural)
                del st.objects[key]
                st.changed.pop(key, None)
                st.dump()
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "kind": plural, "uid": old["metadata"]["uid"]}}
            if not isinstance(body, dict):
                return 400, status_obj(400, "BadRequest", "the body of the request was in an unknown format")
            if method == "POST":
                if name is not None:
                    return 405, status_obj(405, "MethodNotAllowed", "POST goes to the collection")
                if body.get("kind") != kind or body.get("apiVersion") != api_version:
                    raise Invalid([("kind", f"{body.get('apiVersion')}/{body.get('kind')} does not belong at {path}")], 400, "BadRequest")
                validate(kind, body, ns)
                name = body["metadata"]["name"]
                key = (gv, plural, ns, name)
                if key in st.objects:
                    return 409, status_obj(409, "AlreadyExists", f'{plural} "{name}" already exists', name=name, kind=plural)
                obj = copy.deepcopy(body)
                obj["metadata"]["namespace"] = ns
                st.default(kind, obj, None)
                obj["metadata"]["resourceVersion"] = st.next_rv()
                st.objects[key] = obj
                if kind == "StatefulSet":
                    st.changed[key] = time.time()
                st.dump()
                return 201, obj
            if old is None:
                return 404, status_obj(404, "NotFound", f'{plural} "{name}" not found', name=name, kind=plural)
            if method == "PUT":
                new = copy.deepcopy(body)
                if body.get("kind") != kind or body.get("apiVersion") != api_version:
                    raise Invalid([("kind", f"{body.get('apiVersion')}/{body.get('kind')} does not belong at {path}")], 400, "BadRequest")
            else:
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/merge-patch+json":
                    return 415, status_obj(415, "UnsupportedMediaType", f"the fake serves JSON merge patch only, not {ctype!r}")
                new = merge_patch(old, body)
            meta = new.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise Invalid([("metadata.name", "the name of the object does not match the name on the URL")], 400, "BadRequest")
            meta["name"] = name
            rv = meta.get("resourceVersion") if method == "PUT" else (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                return 409, status_obj(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; please apply your changes to the latest version and try again', name=name, kind=plural)
            validate(kind, new, ns)
            new["metadata"]["namespace"] = ns
            st.default(kind, new, old)
            st.immutable(kind, old, new)
            unchanged = {k: v for k, v in new.items() if k != "status"} == {k: v for k, v in old.items() if k != "status"} \
                or strip_rv(new) == strip_rv(old)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"] if unchanged else st.next_rv()
            st.objects[key] = new
            if kind == "StatefulSet" and new["metadata"]["generation"] != old["metadata"]["generation"]:
                st.changed[key] = time.time()
            st.dump()
            return 200, new


def strip_rv(o):
    o = copy.deepcopy(o)
    o.get("metadata", {}).pop("resourceVersion", None)
    o.pop("status", None)
    return o


# ---------------------------------------------------------------------------------------------
# The StatefulSet controller and a kubelet for pod 0


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Kubelet:
    """Runs pod 0 of a nats StatefulSet as a local nats-server."""

    def __init__(self, store):
        self.store = store
        self.pods = {}  # key -> {proc, revision, image, root}

    def stop(self, key, wipe=False):
        pod = self.pods.pop(key, None)
        if pod:
            p = pod["proc"]
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if wipe:
                shutil.rmtree(pod["root"], ignore_errors=True)

    def start(self, key, sts, revision):
        args = self.store.args
        gv, plural, ns, name = key
        pod_name = f"{name}-0"
        root = os.path.join(args.dir, "pods", ns, pod_name)
        spec = sts["spec"]["template"]["spec"]
        c = spec["containers"][0]
        mounts = {}
        for v in spec.get("volumes") or []:
            if "configMap" in v:
                cm = self.store.objects.get(("v1", "configmaps", ns, v["configMap"]["name"]))
                if cm is None:
                    return False  # ContainerCreating: the ConfigMap is missing
                mounts[v["name"]] = {k: d.encode() for k, d in (cm.get("data") or {}).items()}
            elif "secret" in v:
                sec = self.store.objects.get(("v1", "secrets", ns, v["secret"]["secretName"]))
                if sec is None:
                    return False
                mounts[v["name"]] = {k: base64.b64decode(d) for k, d in (sec.get("data") or {}).items()}
        paths = {m["mountPath"]: root + m["mountPath"] for m in c.get("volumeMounts") or []}

        def remap(data):
            # The container sees its volumes at their mountPaths; here they live under the pod's
            # root, so absolute paths into a mount (store_dir: /data/jetstream) are remapped.
            text = data.decode("utf-8", "replace")
            for mp in sorted(paths, key=len, reverse=True):
                text = re.sub(r"(?<=[\s:=\"'])" + re.escape(mp) + r"(?=[/\s\"']|$)", paths[mp], text)
            return text.encode()

        for m in c.get("volumeMounts") or []:
            target = paths[m["mountPath"]]
            os.makedirs(target, exist_ok=True)
            for fname, data in mounts.get(m["name"], {}).items():
                with open(os.path.join(target, fname), "wb") as f:
                    f.write(remap(data))
        argv = []
        for a in c.get("args") or []:
            for mp, target in paths.items():
                if a.startswith(mp + "/"):
                    a = target + a[len(mp):]
            argv.append(a)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        # The test run's mark (tests/src/reaper.rs), so that its guardian also stops the pod.
        env.update({k: v for k, v in os.environ.items() if k == "EVENTBUS_TEST_RUN"})
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
            elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[e["name"]] = pod_name
        cmd = [args.nats_server] + argv + ["-a", "127.0.0.1", "-p", str(args.pod_port), "-m", str(free_port())]
        log = open(os.path.join(root, "nats.log"), "ab")
        # Pods start only on the controller thread, which lives as long as this process, so the
        # kernel's parent-death signal kills them when the fake dies in any way.
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.pods[key] = {"proc": proc, "revision": revision, "image": c.get("image"), "root": root, "cmd": cmd,
                          "started": time.time()}
        return True

    def ready(self, key):
        pod = self.pods.get(key)
        return bool(pod) and pod["proc"].poll() is None and port_open(self.store.args.pod_port)

    def report(self):
        write_json(os.path.join(self.store.args.dir, "pods.json"), {
            f"{k[2]}/{k[3]}-0": {"image": p["image"], "pid": p["proc"].pid, "revision": p["revision"],
                                 "running": p["proc"].poll() is None, "ready": self.ready(k)}
            for k, p in self.pods.items()})


def controller(store, kubelet):
    last_report = None
    while True:
        time.sleep(0.1)
        with store.lock:
            live = set()
            for key, sts in list(store.objects.items()):
                if key[1] != "statefulsets":
                    continue
                live.add(key)
                spec, meta = sts["spec"], sts["metadata"]
                revision = f"{key[3]}-{template_hash(spec['template'])}"
                want = int(spec.get("replicas", 1))
                settled = time.time() - store.changed.get(key, 0) >= store.args.ready_after
                ready = want if settled else 0
                if kubelet is not None and want >= 1:
                    pod = kubelet.pods.get(key)
                    if pod is None or pod["revision"] != revision or pod["proc"].poll() is not None:
                        crashed = pod is not None and pod["revision"] == revision and pod["proc"].poll() is not None
                        if crashed and time.time() - pod["started"] < 2:
                            ready = 0  # CrashLoopBackOff, in short
                        elif settled:
                            kubelet.stop(key)
                            kubelet.start(key, sts, revision)
                        ready = 0
                    elif not kubelet.ready(key):
                        ready = 0
                elif kubelet is not None:
                    kubelet.stop(key)
                status = {
                    "observedGeneration": meta.get("generation", 1),
                    "replicas": want,
                    "readyReplicas": ready,
                    "currentReplicas": want if ready == want else 0,
                    "updatedReplicas": ready,
                    "availableReplicas": ready,
                    "currentRevision": revision if ready == want else sts.get("status", {}).get("currentRevision", ""),
                    "updateRevision": revision,
                    "collisionCount": 0,
                }
                if sts.get("status") != status:
                    sts["status"] = status
                    store.dump()
            if kubelet is not None:
                for key in [k for k in kubelet.pods if k not in live]:
                    kubelet.stop(key, wipe=True)
                report = {k: (p["revision"], kubelet.ready(k)) for k, p in kubelet.pods.items()}
                if report != last_report:
                    kubelet.report()
                    last_report = report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--token", default=None)
    ap.add_argument("--namespaces", default="default,eventbus")
    ap.add_argument("--ready-after", type=float, default=0.3)
    ap.add_argument("--nats-server", default=None)
    ap.add_argument("--pod-port", type=int, default=0)
    args = ap.parse_args()
    args.namespaces = set(n for n in args.namespaces.split(",") if n)
    os.makedirs(args.dir, exist_ok=True)
    store = Store(args)
    store.dump()
    Handler.store = store
    kubelet = Kubelet(store) if args.nats_server else None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=controller, args=(store, kubelet), daemon=True).start()

    def stop(*_):
        if kubelet:
            for k in list(kubelet.pods):
                kubelet.stop(k)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(os.path.join(args.dir, "port.tmp"), "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(os.path.join(args.dir, "port.tmp"), os.path.join(args.dir, "port"))
    server.serve_forever()


if __name__ == "__main__":
    main()
