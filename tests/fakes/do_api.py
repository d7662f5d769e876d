#!/usr/bin/env python3
"""A faithful fake of DigitalOcean's App Platform API (`/v2/apps...`) for the eventbus tests.

What makes it faithful rather than a stub:

* Every request body is validated against DigitalOcean's published OpenAPI description
  (shipped in tests/fakes/digitalocean-openapi, resolved from the root document's `paths`, so
  the operation, its request schema and its responses are DigitalOcean's own), and rejected
  with 422 `unprocessable_entity` like the API does. Unknown fields are refused too (stricter
  than the schema, which leaves objects open), so a misspelt key cannot pass unnoticed.
  App Platform's own rules beyond the schema (one source per component, ingress rules
  naming a component, unique env keys, unique app names...) answer 422 / 409 as well.
* Every JSON answer the fake produces is validated against the operation's response schema;
  a fake that drifted from the API answers 500 "fake bug" instead of lying.
* Deployments walk PENDING_BUILD -> BUILDING -> PENDING_DEPLOY -> DEPLOYING -> ACTIVE (the
  previous one becomes SUPERSEDED), or ERROR with failed progress steps carrying a reason
  {code, message}, as the deployments API reports them.
* An ACTIVE app is backed by a real process: the service's `run_command` run by `sh -c` with
  the spec's env vars (SECRET values as the API received them, i.e. after the host put the
  secret in place of its handle), in a private container directory (`/tmp/...` in the command
  and env is remapped there), and the nats image's `nats-server` on PATH (the project's
  `.venv/bin/nats-server`). The container's network is remapped to loopback: NATS's
  `listen` to a free port, its `websocket` listener to the app's stable loopback port. App
  Platform routes the public URL to the service's `http_port`: if the websocket listener is
  not on `http_port`, the deployment fails its health check like it would there.
  `live_url` is `http://127.0.0.1:<port>`, so a broker URL is `ws://127.0.0.1:<port>`.
* SECRET env values are answered encrypted (`EV[1:...]`), never in plain text; an encrypted
  value sent back is accepted as the same secret.
* 401 without `Authorization: Bearer <token>`.

Test hooks, outside `/v2` (so no grant can reach them), without auth:
  POST /_fake/errors           {"status": 429, "count": N}  the next N /v2 calls answer that
  POST /_fake/fail_next_deployment {"code": "...", "message": "..."}  the next deployment fails
  GET  /_fake/log              [{method, path, status}] of every /v2 call
  GET  /_fake/apps             the apps as the fake sees them (ports, phases; no secrets)
  GET  /_fake/secrets          the SECRET env values the fake received, in plain text
                               (what a test needs to check a canary never leaks elsewhere)

Run: do_api.py --token TOKEN [--openapi ROOT.yaml] [--nats-server BIN] [--phase-seconds S]
Prints `LISTENING http://127.0.0.1:PORT` and serves until stdin closes (or SIGTERM).
Needs PyYAML and jsonschema.
"""

import argparse
import base64
import copy
import datetime
import json
import os
import re
import secrets as pysecrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def fail(reason):
    """Startup failed: say why on stdout, where the test reads its first line, and stop."""
    print(f"FAILED {reason}", flush=True)
    sys.exit(f"do-fake: {reason}")


try:
    import jsonschema
    import yaml
except ImportError as e:
    fail(f"needs the Python package {e.name!r} ({e}): run ./dev setup, or pip install jsonschema pyyaml")

try:
    YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    YamlLoader = yaml.SafeLoader

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OPENAPI = os.path.join(HERE, "digitalocean-openapi", "specification", "DigitalOcean-public.v2.yaml")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(*a):
    print("do-fake:", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# DigitalOcean's OpenAPI description


class OpenAPI:
    SKIP = ("example", "examples", "x-codeSamples")

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.files = {}
        self.ops = []
        doc = self.load(self.root)
        for template, item in doc["paths"].items():
            if not template.startswith("/v2/apps"):
                continue
            for method, op in item.items():
                if not isinstance(op, dict) or "$ref" not in op:
                    continue
                file = os.path.normpath(os.path.join(os.path.dirname(self.root), op["$ref"]))
                rx = re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$")
                self.ops.append((method.upper(), rx, template, file))
        self.resolved = {}

    def load(self, path):
        if path not in self.files:
            with open(path) as f:
                self.files[path] = yaml.load(f, Loader=YamlLoader)
        return self.files[path]

    def deref(self, node, base, stack=(), in_props=False):
        if isinstance(node, dict):
            if "$ref" in node and isinstance(node["$ref"], str):
                file, _, pointer = node["$ref"].partition("#")
                path = os.path.normpath(os.path.join(os.path.dirname(base), file)) if file else base
                key = (path, pointer)
                if key in stack:
                    return {}  # a cycle: anything goes below this point
                target = self.load(path)
                for part in [p for p in pointer.split("/") if p]:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                return self.deref(target, path, stack + (key,))
            out = {}
            for k, v in node.items():
                if not in_props and k in self.SKIP:
                    continue
                out[k] = self.deref(v, base, stack, in_props=(k == "properties" and not in_props))
            return out
        if isinstance(node, list):
            return [self.deref(v, base, stack) for v in node]
        return node

    def operation(self, method, path):
        """(template, params, resolved operation) or (template, None, None) for a wrong method."""
        seen = None
        for m, rx, template, file in self.ops:
            g = rx.match(path)
            if not g:
                continue
            seen = template
            if m != method:
                continue
            if file not in self.resolved:
                self.resolved[file] = self.deref(self.load(file), file)
            names = re.findall(r"\{([^}]+)\}", template)
            return template, dict(zip(names, g.groups())), self.resolved[file]
        return seen, None, None


def self_check(api):
    """Every App Platform operation must resolve (a missing file fails here, at start, naming
    it), and DigitalOcean's own sample request (apps_create.yml) must pass the request
    validation, or the loader is wrong and every verdict of this fake would be too."""
    for _, _, _, file in api.ops:
        if file not in api.resolved:
            api.resolved[file] = api.deref(api.load(file), file)
    _, _, op = api.operation("POST", "/v2/apps")
    raw = api.load(next(f for m, _, t, f in api.ops if m == "POST" and t == "/v2/apps"))
    example = raw["requestBody"]["content"]["application/json"]["example"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    errs = schema_errors(schema, example) + unknown_fields(schema, example)
    if errs:
        fail(f"DigitalOcean's own example request fails validation: {errs}")
    bad = {"spec": {"name": "Not A Name", "services": [{"name": "x", "http_port": 0}]}}
    if not schema_errors(schema, bad):
        fail("an invalid app spec passed validation: the schema was not resolved")


def to_jsonschema(node):
    """OpenAPI 3.0 Schema Object -> JSON Schema (draft 4): `nullable` becomes a null type."""
    if isinstance(node, dict):
        out = {k: to_jsonschema(v) for k, v in node.items() if not k.startswith("x-")}
        if out.get("nullable") is True and "type" in out:
            t = out["type"]
            out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
        out.pop("nullable", None)
        return out
    if isinstance(node, list):
        return [to_jsonschema(v) for v in node]
    return node


def known_properties(schema):
    """Every property name a schema allows (through allOf/anyOf/oneOf), or None if open."""
    if not isinstance(schema, dict):
        return None
    ap = schema.get("additionalProperties")
    if ap is True or isinstance(ap, dict) and ap:
        return None
    props = dict(schema.get("properties", {}))
    subs = [s for k in ("allOf", "anyOf", "oneOf") for s in schema.get(k, [])]
    for s in subs:
        p = known_properties(s)
        if p is None and isinstance(s, dict) and (s.get("properties") or s.get("allOf") or s.get("additionalProperties")):
            return None
        if p:
            props.update(p)
    if not props and not subs:
        return None
    return props


def unknown_fields(schema, value, path="body"):
    errs = []
    if isinstance(value, dict):
        props = known_properties(schema)
        if props is None:
            return errs
        for k, v in value.items():
            if k not in props:
                errs.append(f"{path}.{k}: unknown field")
            else:
                errs += unknown_fields(props[k], v, f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema, dict):
        items = schema.get("items")
        if items is None:
            for k in ("allOf", "anyOf", "oneOf"):
                for s in schema.get(k, []):
                    if isinstance(s, dict) and "items" in s:
                        items = s["items"]
        if items is not None:
            for i, v in enumerate(value):
                errs += unknown_fields(items, v, f"{path}[{i}]")
    return errs


def schema_errors(schema, value):
    v = jsonschema.Draft4Validator(to_jsonschema(schema))
    out = []
    for e in sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        out.append(f"{where}: {e.message}")
    return out


# ---------------------------------------------------------------------------------------------
# Apps, deployments and their containers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Container:
    """One running instance of the app's service: its run_command under `sh -c`."""

    def __init__(self, root, service, envs, ws_port, nats_bin):
        self.dir = tempfile.mkdtemp(prefix="c-", dir=root)
        self.tmp = os.path.join(self.dir, "tmp")
        os.makedirs(self.tmp)
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None
        self.ws_port = ws_port
        self.service = service
        self.envs = envs
        self.nats_bin = nats_bin

    def remap(self, text):
        return text.replace("/tmp/", self.tmp + "/").replace("/tmp ", self.tmp + " ")

    def start(self):
        """Starts the container; returns None once the route's port answers, else (code, message)."""
        svc = self.service
        http_port = svc.get("http_port", 8080)
        env = {"PATH": os.path.dirname(os.path.abspath(self.nats_bin)) + ":/usr/bin:/bin", "HOME": self.dir}
        # The test run's mark (tests/src/reaper.rs), so that its guardian also stops the container.
        env.update({k: v for k, v in os.environ.items() if k == "EVENTBUS_TEST_RUN"})
        env["PORT"] = str(http_port)
        routed = None
        for k, v in self.envs.items():
            if k == "NATS_CONFIG":
                v, routed = self.remap_nats_config(v, http_port)
            env[k] = self.remap(v)
        cmd = svc.get("run_command")
        if not cmd:
            return ("DeployContainerExitNonZero", "the nats image's default command needs a config file the app does not have")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                ["sh", "-c", self.remap(cmd)], cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                start_new_session=True,  # the container: its whole process group stops with it
            )
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return ("DeployContainerExitNonZero", f"your container exited with code {self.proc.returncode}: {self.log_tail()}")
            if routed is not None and port_open(self.ws_port):
                return None
            if routed is None and time.time() > deadline - 12:
                break
            time.sleep(0.05)
        self.stop()
        return (
            "DeployContainerHealthChecksFailed",
            f"health checks failed: nothing answers on http_port {http_port}, which the app's route forwards to: {self.log_tail()}",
        )

    def remap_nats_config(self, conf, http_port):
        """The container's network on loopback: client port free, websocket on the route's port."""
        conf = re.sub(r'listen\s*[:=]\s*"?[^;"}\s]+"?', 'listen: "127.0.0.1:-1"', conf)
        conf = re.sub(r'(^|[;\s{])(http|monitor_port|http_port)\s*[:=]\s*"?[^;"}\s]+"?', r"\1", conf)
        routed = None
        m = re.search(r"websocket\s*\{([^}]*)\}", conf)
        if m:
            body = m.group(1)
            pm = re.search(r"port\s*[:=]\s*(\d+)", body)
            if pm and int(pm.group(1)) == int(http_port):
                routed = True
                body = body[: pm.start()] + f'port: {self.ws_port}; host: "127.0.0.1"' + body[pm.end() :]
            elif pm:
                body = body[: pm.start()] + 'port: -1; host: "127.0.0.1"' + body[pm.end() :]
            conf = conf[: m.start(1)] + body + conf[m.end(1) :]
        return conf, routed

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [l.strip() for l in f.read().splitlines() if l.strip()]
            return " | ".join(lines[-3:]) or "(no output)"
        except OSError:
            return "(no output)"

    def stop(self):
        if self.proc:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.time() + wait
                while time.time() < deadline and self.group_alive():
                    time.sleep(0.02)
                if not self.group_alive():
                    break
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def group_alive(self):
        self.proc.poll()
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Fake:
    def __init__(self, args):
        self.args = args
        self.api = OpenAPI(args.openapi)
        self.lock = threading.RLock()
        self.apps = {}
        self.log = []
        self.errors = {"status": 0, "count": 0}
        self.fail_next = None
        self.plain = {}  # encrypted SECRET value -> plain text
        self.received_secrets = []
        self.root = tempfile.mkdtemp(prefix="do-fake-")
        self.owner = str(uuid.uuid4())

    # -- secrets, as App Platform keeps them

    def seal(self, spec):
        """SECRET env values: plain text in, `EV[1:...]` kept and answered."""
        for comp in spec.get("services", []) + spec.get("workers", []) + spec.get("jobs", []):
            for e in comp.get("envs", []):
                if e.get("type") == "SECRET" and "value" in e:
                    v = e["value"]
                    if v in self.plain:
                        continue
                    enc = "EV[1:%s:%s]" % (
                        base64.b64encode(os.urandom(12)).decode(),
                        base64.b64encode(os.urandom(len(v) + 16)).decode(),
                    )
                    self.plain[enc] = v
                    self.received_secrets.append(v)
                    e["value"] = enc
        return spec

    def envs_of(self, service):
        out = {}
        for e in service.get("envs", []):
            if e.get("scope", "RUN_AND_BUILD_TIME") == "BUILD_TIME":
                continue
            v = e.get("value", "")
            out[e["key"]] = self.plain.get(v, v) if e.get("type") == "SECRET" else v
        return out

    # -- App Platform's own rules beyond the schema

    def check_spec(self, spec, app_id=None):
        errs = []
        comps = []
        for kind in ("services", "workers", "jobs", "static_sites", "functions"):
            for c in spec.get(kind, []) or []:
                comps.append(c.get("name"))
                if kind in ("services", "workers", "jobs", "static_sites"):
                    sources = [s for s in ("git", "github", "gitlab", "bitbucket", "image") if s in c]
                    if len(sources) != 1:
                        errs.append(f"{kind} {c.get('name')!r}: exactly one source (git, github, gitlab, bitbucket or image) is required, got {sources or 'none'}")
                    img = c.get("image")
                    if img is not None:
                        if not img.get("registry_type"):
                            errs.append(f"{kind} {c.get('name')!r}: image.registry_type is required")
                        if not img.get("repository"):
                            errs.append(f"{kind} {c.get('name')!r}: image.repository is required")
                        if img.get("registry_type") == "DOCR" and img.get("registry"):
                            errs.append(f"{kind} {c.get('name')!r}: image.registry must be empty for DOCR")
                        if img.get("registry_type") in ("DOCKER_HUB", "GHCR") and not img.get("registry"):
                            errs.append(f"{kind} {c.get('name')!r}: image.registry is required for {img.get('registry_type')}")
                        if img.get("tag") and img.get("digest"):
                            errs.append(f"{kind} {c.get('name')!r}: image.tag and image.digest are mutually exclusive")
                keys = [e.get("key") for e in c.get("envs", []) or []]
                dup = sorted({k for k in keys if keys.count(k) > 1})
                if dup:
                    errs.append(f"{kind} {c.get('name')!r}: duplicate env keys {dup}")
                if c.get("autoscaling") and "instance_count" in c:
                    errs.append(f"{kind} {c.get('name')!r}: instance_count must not be set with autoscaling")
        if len(set(comps)) != len(comps):
            errs.append("component names must be unique within the app")
        for i, rule in enumerate((spec.get("ingress") or {}).get("rules", []) or []):
            target = (rule.get("component") or {}).get("name")
            if rule.get("component") and rule.get("redirect"):
                errs.append(f"ingress.rules[{i}]: only one of component or redirect may be set")
            if target is not None and target not in comps:
                errs.append(f"ingress.rules[{i}].component.name: {target!r} is not a component of the app")
        return errs

    # -- deployments

    def new_deployment(self, app, cause):
        dep = {
            "id": str(uuid.uuid4()),
            "spec": copy.deepcopy(app["spec"]),
            "services": [{"name": s["name"]} for s in app["spec"].get("services", [])],
            "phase": "PENDING_BUILD",
            "phase_last_updated_at": now(),
            "created_at": now(),
            "updated_at": now(),
            "cause": cause,
            "progress": {"pending_steps": 2, "running_steps": 0, "success_steps": 0, "error_steps": 0, "total_steps": 2, "steps": []},
            "tier_slug": "basic",
        }
        fail, self.fail_next = self.fail_next, None
        app["deployments"].insert(0, dep)
        app["last_deployment_created_at"] = dep["created_at"]
        threading.Thread(target=self.walk, args=(app["id"], dep["id"], fail), daemon=True).start()
        return dep

    def set_phase(self, dep, phase, steps=None):
        dep["phase"] = phase
        dep["phase_last_updated_at"] = dep["updated_at"] = now()
        if steps is not None:
            p = dep["progress"]
            p["steps"] = steps
            flat = [s for s in steps]
            p["success_steps"] = sum(1 for s in flat if s["status"] == "SUCCESS")
            p["error_steps"] = sum(1 for s in flat if s["status"] == "ERROR")
            p["running_steps"] = sum(1 for s in flat if s["status"] == "RUNNING")
            p["pending_steps"] = sum(1 for s in flat if s["status"] == "PENDING")

    @staticmethod
    def step(name, status, components=None, reason=None, message="Deploying service"):
        s = {"name": name, "status": status, "started_at": now()}
        if status in ("SUCCESS", "ERROR"):
            s["ended_at"] = now()
        if components is not None:
            kids = []
            for c in components:
                k = {"name": c, "component_name": c, "message_base": message, "status": status}
                if reason is not None:
                    k["reason"] = reason
                kids.append(k)
            s["steps"] = [{"name": "components", "status": status, "steps": kids}]
        return s

    def walk(self, app_id, dep_id, fail):
        pause = self.args.phase_seconds
        with self.lock:
            app = self.apps.get(app_id)
            if not app:
                return
            dep = next(d for d in app["deployments"] if d["id"] == dep_id)
            comps = [s["name"] for s in dep["spec"].get("services", [])]

        def current():
            a = self.apps.get(app_id)
            return a is not None and a["deployments"] and a["deployments"][0]["id"] == dep_id

        def superseded():
            self.set_phase(dep, "SUPERSEDED")

        for phase, steps in (
            ("PENDING_BUILD", [self.step("build", "PENDING"), self.step("deploy", "PENDING")]),
            ("BUILDING", [self.step("build", "RUNNING", comps, message="Pulling image"), self.step("deploy", "PENDING")]),
            ("PENDING_DEPLOY", [self.step("build", "SUCCESS", comps, message="Pulling image"), self.step("deploy", "PENDING")]),
            ("DEPLOYING", [self.step("build", "SUCCESS", comps, message="Pulling image"), self.step("deploy", "RUNNING", comps)]),
        ):
            time.sleep(pause)
            with self.lock:
                if not current():
                    return superseded()
                self.set_phase(dep, phase, steps)
        time.sleep(pause)
        build_ok = self.step("build", "SUCCESS", comps, message="Pulling image")
        if fail:
            with self.lock:
                reason = {"code": fail.get("code", "DeployContainerExitNonZero"), "message": fail.get("message", "your container exited")}
                self.set_phase(dep, "ERROR", [build_ok, self.step("deploy", "ERROR", comps, reason=reason)])
            return
        err = self.run(app_id, dep)
        with self.lock:
            if err is not None:
                self.set_phase(dep, "ERROR", [build_ok, self.step("deploy", "ERROR", comps, reason={"code": err[0], "message": err[1]})])
                return
            app = self.apps.get(app_id)
            if app is None or not current():
                return superseded()
            for d in app["deployments"][1:]:
                if d["phase"] == "ACTIVE":
                    d["phase"] = "SUPERSEDED"
            self.set_phase(dep, "ACTIVE", [build_ok, self.step("deploy", "SUCCESS", comps)])
            app["active_deployment_id"] = dep_id
            app["live_url"] = f"http://127.0.0.1:{app['port']}"
            app["updated_at"] = now()

    def run(self, app_id, dep):
        """Rolls the deployment's service out: a candidate first (a failed one leaves the old
        deployment serving), then the new container on the app's stable port."""
        spec = dep["spec"]
        services = spec.get("services", [])
        if len(services) != 1:
            return ("DeployContainerExitNonZero", "the fake runs apps of exactly one service")
        svc = services[0]
        img = svc.get("image") or {}
        if img.get("registry_type") != "DOCKER_HUB" or img.get("registry") != "library" or img.get("repository") != "nats":
            return ("ImagePullFailed", f"the fake can run only the official nats image (docker.io/library/nats), not {img}")
        envs = self.envs_of(svc)
        candidate = Container(self.root, svc, envs, free_port(), self.args.nats_server)
        err = candidate.start()
        candidate.cleanup()
        if err is not None:
            return err
        with self.lock:
            app = self.apps.get(app_id)
            if app is None:
                return ("DeployCanceled", "the app was deleted")
            old, app["container"] = app.get("container"), None
            port = app["port"]
        if old:
            old.cleanup()
        final = Container(self.root, svc, envs, port, self.args.nats_server)
        err = final.start()
        if err is not None:
            final.cleanup()
            return err
        with self.lock:
            if app_id in self.apps:
                self.apps[app_id]["container"] = final
            else:
                final.cleanup()
        return None

    # -- views

    def app_view(self, app):
        v = {
            "id": app["id"],
            "owner_uuid": self.owner,
            "spec": copy.deepcopy(app["spec"]),
            "created_at": app["created_at"],
            "updated_at": app["updated_at"],
            "last_deployment_created_at": app["last_deployment_created_at"],
            "tier_slug": "basic",
            "region": {
                "slug": app["spec"].get("region", "nyc"),
                "label": app["spec"].get("region", "nyc"),
                "flag": "usa",
                "continent": "North America",
                "data_centers": [app["spec"].get("region", "nyc") + "1"],
            },
        }
        if app.get("live_url"):
            v["live_url"] = app["live_url"]
            v["live_url_base"] = app["live_url"]
            v["live_domain"] = app["live_url"].split("://", 1)[1]
            v["default_ingress"] = app["live_url"]
        deps = app["deployments"]
        active = next((d for d in deps if d["id"] == app.get("active_deployment_id")), None)
        if active:
            v["active_deployment"] = copy.deepcopy(active)
        if deps and deps[0]["phase"] not in ("ACTIVE", "ERROR", "CANCELED", "SUPERSEDED"):
            v["in_progress_deployment"] = copy.deepcopy(deps[0])
            v["pending_deployment"] = copy.deepcopy(deps[0])
        return v

    def fake_view(self):
        out = []
        for a in self.apps.values():
            c = a.get("container")
            out.append({
                "id": a["id"],
                "name": a["spec"]["name"],
                "port": a["port"],
                "live_url": a.get("live_url"),
                "running": bool(c and c.proc and c.proc.poll() is None),
                "spec": a["spec"],
                "deployments": [{"id": d["id"], "phase": d["phase"], "cause": d["cause"],
                                 "instance_size_slug": (d["spec"].get("services") or [{}])[0].get("instance_size_slug")}
                                for d in a["deployments"]],
            })
        return out

    def shutdown(self):
        with self.lock:
            for a in self.apps.values():
                if a.get("container"):
                    a["container"].cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def err_body(id_, message):
    return {"id": id_, "message": message, "request_id": str(uuid.uuid4())}


UUID_RX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet: the request log is /_fake/log
            pass

        def send_json(self, status, body, headers=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ratelimit-limit", "5000")
            self.send_header("ratelimit-remaining", "4999")
            self.send_header("ratelimit-reset", str(int(time.time()) + 60))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_DELETE(self):
            self.handle_any("DELETE")

        def do_PATCH(self):
            self.handle_any("PATCH")

        def handle_any(self, method):
            url = urlsplit(self.path)
            raw = self.body()
            if url.path.startswith("/_fake/"):
                return self.hook(method, url.path, raw)
            status = self.v2(method, url, raw)
            with fake.lock:
                fake.log.append({"method": method, "path": self.path, "status": status})

        def hook(self, method, path, raw):
            with fake.lock:
                data = json.loads(raw) if raw else {}
                if method == "POST" and path == "/_fake/errors":
                    fake.errors = {"status": int(data.get("status", 429)), "count": int(data.get("count", 1))}
                    return self.send_json(200, fake.errors)
                if method == "POST" and path == "/_fake/fail_next_deployment":
                    fake.fail_next = data or {}
                    return self.send_json(200, fake.fail_next)
                if method == "GET" and path == "/_fake/log":
                    return self.send_json(200, fake.log)
                if method == "GET" and path == "/_fake/apps":
                    return self.send_json(200, fake.fake_view())
                if method == "GET" and path == "/_fake/secrets":
                    return self.send_json(200, fake.received_secrets)
            return self.send_json(404, err_body("not_found", "no such test hook"))

        def v2(self, method, url, raw):
            template, params, op = fake.api.operation(method, url.path)
            if template is None:
                self.send_json(404, err_body("not_found", "The resource you requested could not be found."))
                return 404
            if op is None:
                self.send_json(405, err_body("method_not_allowed", f"{method} is not allowed on {template}"))
                return 405
            if self.headers.get("Authorization") != f"Bearer {fake.args.token}":
                self.send_json(401, err_body("unauthorized", "Unable to authenticate you."))
                return 401
            with fake.lock:
                if fake.errors["count"] > 0:
                    fake.errors["count"] -= 1
                    st = fake.errors["status"]
                    if st == 429:
                        self.send_json(429, err_body("too_many_requests", "API rate limit exceeded."), {"ratelimit-remaining": "0", "retry-after": "1"})
                    else:
                        self.send_json(st, err_body("server_error", "Server was unable to give you a response."))
                    return st
            body = None
            if "requestBody" in op:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError as e:
                    self.send_json(400, err_body("bad_request", f"the request body is not JSON: {e}"))
                    return 400
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                if body is None and op["requestBody"].get("required"):
                    self.send_json(422, err_body("unprocessable_entity", "a request body is required"))
                    return 422
                errs = schema_errors(schema, body) + unknown_fields(schema, body)
                if errs:
                    self.send_json(422, err_body("unprocessable_entity", "request payload validation failed: " + "; ".join(errs)))
                    return 422
            for k in ("id", "app_id"):
                if params and k in params and not UUID_RX.match(params[k]):
                    self.send_json(400, err_body("bad_request", f"invalid uuid: {params[k]!r}"))
                    return 400
            status, answer = self.route(method, template, params, url, body)
            if status == 200:
                schema = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    errs = schema_errors(schema, answer)
                    if errs:
                        log("fake bug: answer does not match the response schema:", errs)
                        self.send_json(500, err_body("server_error", "fake bug: " + "; ".join(errs)))
                        return 500
            self.send_json(status, answer)
            return status

        def route(self, method, template, params, url, body):
            with fake.lock:
                q = parse_qs(url.query)
                if template == "/v2/apps" and method == "GET":
                    page = int((q.get("page") or ["1"])[0])
                    per = int((q.get("per_page") or ["20"])[0])
                    apps = sorted(fake.apps.values(), key=lambda a: a["created_at"] + a["id"])
                    chunk = apps[(page - 1) * per : page * per]
                    pages = {}
                    if page * per < len(apps):
                        pages["next"] = f"/v2/apps?page={page + 1}&per_page={per}"
                        pages["last"] = f"/v2/apps?page={(len(apps) + per - 1) // per}&per_page={per}"
                    return 200, {"apps": [fake.app_view(a) for a in chunk], "links": {"pages": pages}, "meta": {"total": len(apps)}}
                if template == "/v2/apps" and method == "POST":
                    spec = body["spec"]
                    errs = fake.check_spec(spec)
                    if errs:
                        return 422, err_body("unprocessable_entity", "invalid app spec: " + "; ".join(errs))
                    if any(a["spec"]["name"] == spec["name"] for a in fake.apps.values()):
                        return 409, err_body("conflict", f"an app with the name {spec['name']!r} already exists")
                    app = {
                        "id": str(uuid.uuid4()),
                        "spec": fake.seal(copy.deepcopy(spec)),
                        "created_at": now(),
                        "updated_at": now(),
                        "deployments": [],
                        "port": free_port(),
                    }
                    fake.apps[app["id"]] = app
                    fake.new_deployment(app, "initial deployment")
                    return 200, {"app": fake.app_view(app)}
                app = fake.apps.get(params.get("id") or params.get("app_id"))
                if app is None:
                    return 404, err_body("not_found", "The resource you requested could not be found.")
                if template == "/v2/apps/{id}" and method == "GET":
                    return 200, {"app": fake.app_view(app)}
                if template == "/v2/apps/{id}" and method == "PUT":
                    spec = body["spec"]
                    errs = fake.check_spec(spec)
                    if errs:
                        return 422, err_body("unprocessable_entity", "invalid app spec: " + "; ".join(errs))
                    if any(a["spec"]["name"] == spec["name"] and a is not app for a in fake.apps.values()):
                        return 409, err_body("conflict", f"an app with the name {spec['name']!r} already exists")
                    app["spec"] = fake.seal(copy.deepcopy(spec))
                    app["updated_at"] = now()
                    fake.new_deployment(app, "app spec updated")
                    return 200, {"app": fake.app_view(app)}
                if template == "/v2/apps/{id}" and method == "DELETE":
                    del fake.apps[app["id"]]
                    if app.get("container"):
                        app["container"].cleanup()
                    return 200, {"id": app["id"]}
                if template == "/v2/apps/{app_id}/deployments" and method == "GET":
                    return 200, {"deployments": copy.deepcopy(app["deployments"]), "links": {"pages": {}}, "meta": {"total": len(app["deployments"])}}
                if template == "/v2/apps/{app_id}/deployments" and method == "POST":
                    dep = fake.new_deployment(app, "manual")
                    return 200, {"deployment": copy.deepcopy(dep)}
                if template == "/v2/apps/{app_id}/deployments/{deployment_id}" and method == "GET":
                    dep = next((d for d in app["deployments"] if d["id"] == params["deployment_id"]), None)
                    if dep is None:
                        return 404, err_body("not_found", "The resource you requested could not be found.")
                    return 200, {"deployment": copy.deepcopy(dep)}
                return 501, err_body("not_implemented", f"the fake does not implement {method} {template}")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--token", default=os.environ.get("DO_FAKE_TOKEN"), required=os.environ.get("DO_FAKE_TOKEN") is None)
    p.add_argument("--openapi", default=DEFAULT_OPENAPI)
    p.add_argument("--nats-server", default=os.path.join(REPO, ".venv", "bin", "nats-server"))
    p.add_argument("--phase-seconds", type=float, default=0.2)
    args = p.parse_args()
    if not os.path.exists(args.openapi):
        fail(f"DigitalOcean's OpenAPI description is not at {args.openapi} (use --openapi)")
    if not shutil.which(args.nats_server):
        found = shutil.which("nats-server")
        if not found:
            fail(f"no nats-server at {args.nats_server} (use --nats-server)")
        args.nats_server = found
    try:
        fake = Fake(args)
        self_check(fake.api)
    except (OSError, yaml.YAMLError, KeyError) as e:
        fail(f"cannot load DigitalOcean's OpenAPI description from {args.openapi}: {e}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"LISTENING http://127.0.0.1:{server.server_address[1]}", flush=True)
    done.wait()
    server.shutdown()
    fake.shutdown()


if __name__ == "__main__":
    main()
