"""The `http` capability (host/src/caps/http.rs): plain HTTP to the origins in `http_allow`
only, GET and HEAD only outside mutating calls, redirects never followed, a name that resolves
to a loopback or private address refused unless the allow-list names that address literally.
Answers are bounded by the payload limit and masked. On httpx.

The `cloud` capability is not offered by the Python host: every call answers `denied`, naming
the Rust CLI as the host for cloud deploy targets. Kafka likewise (see runtime.py)."""

from __future__ import annotations

import ipaddress
import json
import socket

import httpx

from ..policy import READ_ONLY_METHODS
from . import CapError
from .grant import CallGrant
from .secrets import SecretStore


def origin(url: str) -> tuple[str, str, int] | None:
    if "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    authority = rest.split("/")[0].split("?")[0].split("#")[0]
    if not authority or "@" in authority or "\\" in authority:
        return None
    default = {"http": 80, "https": 443}.get(scheme)
    if default is None:
        return None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, tail = authority[: end + 1], authority[end + 1:]
        port_s = tail[1:] if tail.startswith(":") else str(default)
    else:
        host, _, port_s = authority.rpartition(":") if ":" in authority else (authority, "", str(default))
    if not port_s.isdigit():
        return None
    host = host.lower()
    return f"{scheme}://{host}:{int(port_s)}", host, int(port_s)


def _public(ip: ipaddress._BaseAddress) -> bool:
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


class HttpCap:
    def __init__(self, config: dict, secrets: SecretStore, max_payload: int = 1 << 20) -> None:
        self.allow = {o[0] for u in (config.get("http_allow") or []) if isinstance(u, str) and (o := origin(u))}
        self.secrets = secrets
        self.max_payload = max_payload

    def fetch(self, grant: CallGrant, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        o = origin(url)
        if o is None:
            raise CapError.invalid(f"{json.dumps(url)} is not an http(s) URL with a host")
        if o[0] not in self.allow:
            raise CapError.denied(f"{o[0]} is not granted for HTTP: add it to `http_allow` in the iac.provider module config")
        method = method.upper()
        if not grant.mutates and method not in READ_ONLY_METHODS:
            raise CapError.denied(grant.refusal(f"HTTP {method} {url}"))
        host = o[1].strip("[]")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None:
            try:
                addrs = {ipaddress.ip_address(a[4][0]) for a in socket.getaddrinfo(host, o[2])}
            except OSError as e:
                raise CapError.unavailable(f"{host}: {e}") from None
            if not all(_public(a) for a in addrs):
                raise CapError.denied(f"{host} resolves to a non-public address: grant the address itself in `http_allow`")
        try:
            with httpx.Client(follow_redirects=False, timeout=30) as c:
                with c.stream(method, url, headers=headers, content=body) as r:
                    data = b""
                    for chunk in r.iter_bytes():
                        data += chunk
                        if len(data) > self.max_payload:
                            data = data[: self.max_payload]
                            break
                    out_headers = [(k, self.secrets.mask(v)) for k, v in r.headers.items()]
                    try:
                        data = self.secrets.mask(data.decode()).encode()
                    except UnicodeDecodeError:
                        pass
                    return r.status_code, out_headers, data
        except httpx.HTTPError as e:
            raise CapError.unavailable(f"{url}: {self.secrets.redact(str(e))}") from None
