"""Reading a wfctl-format infra.yaml as the Rust CLI does (host/src/infra.rs): modules routed
by `iac_provider` (falling back to `provider`) to the iac.provider module whose provider is
`eventbus`, `${ENV}` expanded with an error per missing variable, module-level `protected`,
credentials (`${VAR}`, `secret://NAME`) swapped for handles before anything reaches the guest,
and the endpoints the file grants (self_hosted brokers' urls, `allow_nats`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .caps.secrets import SecretStore, lookup_named

PROVIDER_NAME = "eventbus"
SECRET_KEYS = ("token", "password", "nkey_seed", "creds")


@dataclass
class Diag:
    file: str
    resource: str
    type: str
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        s = self.file
        if self.resource:
            s += f": resource `{self.resource}`" + (f" ({self.type})" if self.type else "")
        if self.path:
            s += f": {self.path}"
        s += f": {self.message}"
        if self.fix:
            s += f"\n  fix: {self.fix}"
        return s


class Invalid(Exception):
    def __init__(self, diags: list[Diag]):
        super().__init__("\n".join(str(d) for d in diags))
        self.diags = diags


@dataclass
class Infra:
    file: Path
    provider_module: str
    provider_config: dict
    specs: list[dict]
    skipped: list[str] = field(default_factory=list)
    nats_grants: list[str] = field(default_factory=list)


def canonical(v) -> str:
    """JSON as serde_json writes a map: keys sorted, no spaces."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _s(v) -> str | None:
    return v if isinstance(v, str) and v else None


class _Loader:
    def __init__(self, file: str, secrets: SecretStore):
        self.file, self.secrets, self.diags = file, secrets, []

    def diag(self, resource, rtype, path, message, fix):
        self.diags.append(Diag(self.file, resource, rtype, path, message, fix))

    def expand(self, resource, rtype, path, v):
        if isinstance(v, str):
            return self.expand_str(resource, rtype, path, v)
        if isinstance(v, list):
            return [self.expand(resource, rtype, f"{path}[{i}]", x) for i, x in enumerate(v)]
        if isinstance(v, dict):
            return {k: self.expand(resource, rtype, f"{path}.{k}", x) for k, x in v.items()}
        return v

    def expand_str(self, resource, rtype, path, s: str) -> str:
        if "${" not in s:
            return s
        out, rest = [], s
        while "${" in rest:
            start = rest.index("${")
            out.append(rest[:start])
            after = rest[start + 2:]
            if "}" not in after:
                self.diag(resource, rtype, path, f"unterminated ${{ in {json.dumps(s)}", "close the reference with }")
                return s
            name, rest = after[: after.index("}")], after[after.index("}") + 1:]
            if "." in name:
                self.diag(resource, rtype, path, f"${{{name}}} is a cross-module reference, which wfctl resolves; the standalone CLI does not", "write the value, or use an environment variable")
            elif re.fullmatch(r"[A-Za-z0-9_]+", name):
                if name in os.environ:
                    out.append(os.environ[name])
                else:
                    self.diag(resource, rtype, path, f"environment variable {name} is not set", f"export {name}=... before running")
            else:
                self.diag(resource, rtype, path, f"${{{name}}} is not a valid variable reference", "use ${NAME} with letters, digits and _")
        out.append(rest)
        return "".join(out)

    def swap_credentials(self, resource, rtype, config: dict) -> None:
        creds = config.get("credentials")
        if not isinstance(creds, dict):
            return
        for key in SECRET_KEYS:
            raw = creds.get(key)
            if not isinstance(raw, str):
                continue
            path = f"config.credentials.{key}"
            if raw.startswith("${") and raw.endswith("}"):
                var = raw[2:-1]
                if var not in os.environ:
                    self.diag(resource, rtype, path, f"environment variable {var} is not set", f"export {var}=... before running")
                    continue
                value = os.environ[var]
            elif raw.startswith("secret://"):
                name = raw[len("secret://"):]
                value = lookup_named(name)
                if value is None:
                    var = "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in name)
                    self.diag(resource, rtype, path, f"secret {json.dumps(name)} is not set", f"export EVENTBUS_SECRET_{var}=..., or put it in the file $EVENTBUS_SECRETS_DIR/{name}")
                    continue
            else:
                continue
            creds[key] = self.secrets.put(f"{resource}/credentials.{key}", value)


def load(path: Path, secrets: SecretStore) -> Infra:
    """The file's resources and grants, or `Invalid` with every problem found."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise Invalid([Diag(str(path), "", "", "", f"cannot read the file: {e.strerror}", "pass the path of an infra.yaml with -f")]) from None
    return parse(path, text, secrets)


def parse(path: Path, text: str, secrets: SecretStore) -> Infra:
    l = _Loader(str(path), secrets)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        l.diag("", "", "", f"not valid YAML: {e}", "fix the YAML syntax at the position shown")
        raise Invalid(l.diags) from None
    modules = doc.get("modules") if isinstance(doc, dict) else None
    if not isinstance(modules, list):
        l.diag("", "", "modules", "no modules list", "write `modules:` with one entry per resource, as wfctl expects")
        raise Invalid(l.diags)
    names, providers = set(), []
    for i, m in enumerate(modules):
        m = m if isinstance(m, dict) else {}
        name, mtype = _s(m.get("name")) or "", _s(m.get("type")) or ""
        if not name:
            l.diag("", mtype, f"modules[{i}].name", "a module has no name", "give every module a unique name")
            continue
        if name in names:
            l.diag(name, mtype, "name", "two modules have this name", "give every module a unique name")
        names.add(name)
        if mtype == "iac.provider":
            cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
            providers.append((name, _s(cfg.get("provider")) or "", cfg))
    ours = [p for p in providers if p[1] == PROVIDER_NAME]
    provider_module, provider_config = "", {}
    if len(ours) == 1:
        provider_module, provider_config = ours[0][0], ours[0][2]
    elif not ours:
        l.diag("", "iac.provider", "modules", "no iac.provider module has provider: eventbus", "add a module {name: eventbus, type: iac.provider, config: {provider: eventbus}}")
    else:
        l.diag("", "iac.provider", "modules", f"several iac.provider modules use the eventbus provider: {', '.join(p[0] for p in ours)}", "keep one")
    provider_config = l.expand(provider_module, "iac.provider", "config", provider_config)
    nats_grants = [u for u in provider_config.get("allow_nats") or [] if isinstance(u, str)]
    specs, skipped = [], []
    for m in modules:
        if not isinstance(m, dict):
            continue
        name, mtype = _s(m.get("name")), _s(m.get("type"))
        if not name or not mtype or not (mtype.startswith("infra.") or mtype.startswith("platform.")):
            continue
        config = m.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            l.diag(name, mtype, "config", "config must be a mapping", "write key: value pairs under config")
            continue
        config = dict(config)
        route = _s(config.get("iac_provider")) or _s(config.get("provider"))
        fld = "config.iac_provider" if _s(config.get("iac_provider")) else "config.provider"
        target = next((p for p in providers if p[0] == route), None) if route else None
        if target is not None and target[1] != PROVIDER_NAME:
            skipped.append(f"{name} ({mtype}) is routed to {target[0]} (provider {target[1]})")
            continue
        if target is None:
            if mtype.startswith("infra.eventbus"):
                msg = (f"routes to {json.dumps(route)}, which is not declared as an iac.provider module" if route
                       else "is missing: the resource is not routed to any iac.provider module")
                fix = (f"set iac_provider: {provider_module}" if provider_module
                       else "declare an iac.provider module with provider: eventbus and set iac_provider to its name")
                l.diag(name, mtype, fld if route else "config.iac_provider", msg, fix)
            else:
                skipped.append(f"{name} ({mtype}) is not routed to the eventbus provider")
            continue
        if m.get("protected") is True:
            config["protected"] = True
        l.swap_credentials(name, mtype, config)
        config = l.expand(name, mtype, "config", config)
        if mtype == "infra.eventbus" and _s(config.get("deploy_target")) == "self_hosted" and _s(config.get("provider")) != "kafka":
            u = config.get("url") if config.get("url") is not None else config.get("urls")
            if isinstance(u, str):
                nats_grants.append(u)
            elif isinstance(u, list):
                nats_grants.extend(x for x in u if isinstance(x, str))
        deps = config.get("depends_on")
        depends_on = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else ([deps] if isinstance(deps, str) else [])
        specs.append({
            "name": name,
            "resource_type": mtype,
            "config_json": canonical(config),
            "size": _s(config.get("size")) or "",
            "hints": None,
            "depends_on": depends_on,
        })
    if l.diags:
        raise Invalid(l.diags)
    return Infra(path, provider_module, provider_config, specs, skipped, nats_grants)
