"""Where requests go and who they are sent as: host and credential resolution.

Resolution runs once per model instance, on its first request, never per call:
explicit arguments, then `DATABRICKS_*` environment variables, then a profile of
`~/.databrickscfg` (`DATABRICKS_CONFIG_FILE` moves it; `[DEFAULT]` unless one is named).
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from langchain_servingx._errors import ServingConfigurationError

__all__ = [
    "ClientCredentials",
    "ConnectionSettings",
    "is_loopback",
    "normalize_url",
    "resolve_settings",
]

ENV_HOST = "DATABRICKS_HOST"
ENV_TOKEN = "DATABRICKS_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_CLIENT_ID = "DATABRICKS_CLIENT_ID"
ENV_CLIENT_SECRET = "DATABRICKS_CLIENT_SECRET"  # noqa: S105 - a variable name
ENV_PROFILE = "DATABRICKS_CONFIG_PROFILE"
ENV_CONFIG_FILE = "DATABRICKS_CONFIG_FILE"
DEFAULT_PROFILE = "DEFAULT"

MISSING_CREDENTIALS_HINT = (
    f"set {ENV_TOKEN} (a personal access token), or {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} "
    "(OAuth machine-to-machine), pass token= / client_id= and client_secret=, "
    f"or name a ~/.databrickscfg profile with {ENV_PROFILE} or profile="
)


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth client (service principal) for the client-credentials grant."""

    client_id: str
    client_secret: SecretStr


@dataclass(frozen=True)
class ConnectionSettings:
    """The resolved host and credential of one model instance.

    `credential` is a token, client credentials, or `None` (no credential found: the
    first request will say which variables to set).
    """

    host: str | None
    credential: SecretStr | ClientCredentials | None


@dataclass(frozen=True)
class _Layer:
    name: str
    host: str | None = None
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    def credential(self) -> SecretStr | ClientCredentials | None:
        has_token = bool(self.token)
        has_client = bool(self.client_id or self.client_secret)
        if has_token and has_client:
            raise ServingConfigurationError(
                f"{self.name} configures both a token and OAuth client credentials; "
                "keep exactly one kind of credential"
            )
        if has_client:
            if not (self.client_id and self.client_secret):
                missing = "client_secret" if self.client_id else "client_id"
                raise ServingConfigurationError(
                    f"{self.name} configures OAuth client credentials without {missing}"
                )
            return ClientCredentials(self.client_id, SecretStr(self.client_secret))
        return SecretStr(self.token) if self.token else None


def resolve_settings(
    *,
    host: str | None,
    token: SecretStr | None,
    client_id: str | None,
    client_secret: SecretStr | None,
    profile: str | None,
    environ: Mapping[str, str] | None = None,
    workspace: bool = True,
) -> ConnectionSettings:
    """Resolve host and credential: arguments, then environment, then config profile.

    Credentials are taken whole from the first layer that has any, so a token passed
    explicitly is never mixed with a client secret from the environment; two kinds of
    credential inside one layer is an error rather than a silent pick. With
    `workspace=False` (another OpenAI-compatible server) only the arguments count, so a
    workspace token from the environment is never sent to a third party.
    """
    env = (os.environ if environ is None else environ) if workspace else {}
    layers = [
        _Layer(
            "the arguments",
            host=host,
            token=token.get_secret_value() if token else None,
            client_id=client_id,
            client_secret=client_secret.get_secret_value() if client_secret else None,
        ),
        _Layer(
            "the environment",
            host=env.get(ENV_HOST) or None,
            token=env.get(ENV_TOKEN) or None,
            client_id=env.get(ENV_CLIENT_ID) or None,
            client_secret=env.get(ENV_CLIENT_SECRET) or None,
        ),
    ]
    profile_layer = (
        _profile_layer(profile or env.get(ENV_PROFILE) or None, env) if workspace else None
    )
    if profile_layer is not None:
        layers.append(profile_layer)

    resolved_host = next((layer.host for layer in layers if layer.host), None)
    for layer in layers:
        credential = layer.credential()
        if credential is not None:
            return ConnectionSettings(
                host=normalize_url(resolved_host) if resolved_host else None,
                credential=credential,
            )
    return ConnectionSettings(
        host=normalize_url(resolved_host) if resolved_host else None, credential=None
    )


def _profile_layer(name: str | None, env: Mapping[str, str]) -> _Layer | None:
    path = Path(env.get(ENV_CONFIG_FILE) or Path.home() / ".databrickscfg").expanduser()
    if not path.is_file():
        if name is not None:
            raise ServingConfigurationError(
                f"profile {name!r} was requested but the config file {str(path)!r} does not exist"
            )
        return None
    # [DEFAULT] is read as an ordinary profile: configparser would otherwise copy its keys
    # into every other section, so [sp] would inherit DEFAULT's token (a false conflict) or
    # its host (a request to the wrong workspace). The Databricks SDK reads it the same way.
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00no-defaults")
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ServingConfigurationError(
            f"cannot parse config file {str(path)!r}: {exc.__class__.__name__}"
        ) from None
    section = name or DEFAULT_PROFILE
    values: Mapping[str, str]
    if parser.has_section(section):
        values = parser[section]
    elif section == DEFAULT_PROFILE:
        if name is not None:
            raise ServingConfigurationError(f"config file {str(path)!r} has no [DEFAULT]")
        return None
    else:
        known = ", ".join(parser.sections()) or "none"
        raise ServingConfigurationError(
            f"profile {section!r} not found in {str(path)!r} (profiles: {known})"
        )
    return _Layer(
        f"profile [{section}] of {path}",
        host=values.get("host") or None,
        token=values.get("token") or None,
        client_id=values.get("client_id") or None,
        client_secret=values.get("client_secret") or None,
    )


def normalize_url(url: str) -> str:
    """Add `https://` when no scheme is given and drop trailing slashes."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingConfigurationError(
            f"host {url!r} is not an http(s) URL (expected e.g. https://my-workspace.example.com)"
        )
    if parts.query or parts.fragment:
        raise ServingConfigurationError(f"host {url!r} must not carry a query or fragment")
    return url.rstrip("/")


def is_loopback(url: str) -> bool:
    """True when the URL's host is this machine (127.0.0.0/8, ::1, localhost)."""
    hostname = urlsplit(url).hostname or ""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
