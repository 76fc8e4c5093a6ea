"""Host and credential resolution: arguments > environment > ~/.databrickscfg profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from langchain_servingx._base import ServingClientBase
from langchain_servingx._config import (
    ClientCredentials,
    is_loopback,
    normalize_url,
    resolve_settings,
)
from langchain_servingx._errors import ServingConfigurationError
from tests.conftest import TEST_TOKEN
from tests.serving_server import Reply, ServingTestServer, chat_response

CFG = """\
[DEFAULT]
host  = https://default.example.com
token = dapi-default

[sp]
host          = https://sp.example.com
client_id     = sp-client
client_secret = sp-secret

[pat]
host  = pat.example.com/
token = dapi-pat
"""


class Client(ServingClientBase):
    """The smallest public-class stand-in: the shared fields and nothing else."""


def resolve(**kwargs):
    args = {"host": None, "token": None, "client_id": None, "client_secret": None, "profile": None}
    args.update(kwargs)
    return resolve_settings(**args)


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "databrickscfg"
    path.write_text(CFG)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    return path


def token_of(settings) -> str:
    assert isinstance(settings.credential, SecretStr)
    return settings.credential.get_secret_value()


# -- precedence ------------------------------------------------------------------------


def test_nothing_configured_resolves_to_no_host_no_credential() -> None:
    settings = resolve()
    assert settings.host is None
    assert settings.credential is None


def test_arguments_win_over_environment_and_profile(cfg, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "https://env.example.com")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-env")
    settings = resolve(host="https://arg.example.com", token=SecretStr("dapi-arg"))
    assert settings.host == "https://arg.example.com"
    assert token_of(settings) == "dapi-arg"


def test_environment_wins_over_profile(cfg, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "https://env.example.com")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-env")
    settings = resolve()
    assert settings.host == "https://env.example.com"
    assert token_of(settings) == "dapi-env"


def test_profile_used_when_nothing_else(cfg) -> None:
    settings = resolve()
    assert settings.host == "https://default.example.com"
    assert token_of(settings) == "dapi-default"


def test_layers_combine_host_and_credential(cfg, monkeypatch) -> None:
    # Host from the arguments, token from the environment.
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-env")
    settings = resolve(host="https://arg.example.com")
    assert settings.host == "https://arg.example.com"
    assert token_of(settings) == "dapi-env"


def test_credentials_taken_whole_from_one_layer(monkeypatch) -> None:
    # An explicit token is not mixed with a client id/secret from the environment.
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "env-client")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "env-secret")
    settings = resolve(host="h.example.com", token=SecretStr("dapi-arg"))
    assert token_of(settings) == "dapi-arg"


def test_client_credentials_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "h.example.com")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "env-client")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "env-secret")
    settings = resolve()
    assert isinstance(settings.credential, ClientCredentials)
    assert settings.credential.client_id == "env-client"
    assert settings.credential.client_secret.get_secret_value() == "env-secret"


def test_explicit_environ_mapping_is_used_instead_of_os_environ(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-os")
    environ = {
        "DATABRICKS_HOST": "https://mapping.example.com",
        "DATABRICKS_TOKEN": "dapi-mapping",
        "DATABRICKS_CONFIG_FILE": str(tmp_path / "none"),
    }
    settings = resolve(environ=environ)
    assert settings.host == "https://mapping.example.com"
    assert token_of(settings) == "dapi-mapping"


# -- the config file -------------------------------------------------------------------


def test_config_file_location_from_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "elsewhere.cfg"
    path.write_text("[DEFAULT]\nhost = https://moved.example.com\ntoken = dapi-moved\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    settings = resolve()
    assert settings.host == "https://moved.example.com"
    assert token_of(settings) == "dapi-moved"


def test_missing_config_file_is_fine_when_no_profile_is_named() -> None:
    assert resolve().credential is None


def test_named_profile_with_missing_config_file_is_an_error(tmp_path, monkeypatch) -> None:
    with pytest.raises(ServingConfigurationError, match="does not exist"):
        resolve(profile="sp")


def test_named_profile_via_argument(cfg) -> None:
    settings = resolve(profile="sp")
    assert settings.host == "https://sp.example.com"
    assert isinstance(settings.credential, ClientCredentials)
    assert settings.credential.client_id == "sp-client"
    assert settings.credential.client_secret.get_secret_value() == "sp-secret"


def test_named_profile_via_environment(cfg, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "pat")
    settings = resolve()
    assert settings.host == "https://pat.example.com"
    assert token_of(settings) == "dapi-pat"


def test_profile_argument_wins_over_profile_variable(cfg, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "pat")
    assert resolve(profile="sp").host == "https://sp.example.com"


def test_named_profile_does_not_inherit_default_credentials(cfg) -> None:
    # [DEFAULT] holds a token, [sp] client credentials (the contract's own example file):
    # choosing [sp] must not see the DEFAULT token and call it a conflict.
    settings = resolve(profile="sp")
    assert isinstance(settings.credential, ClientCredentials)


def test_named_profile_does_not_inherit_default_host(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cfg"
    path.write_text("[DEFAULT]\nhost = https://default.example.com\n[bare]\ntoken = dapi-bare\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    settings = resolve(profile="bare")
    assert settings.host is None
    assert token_of(settings) == "dapi-bare"


def test_unknown_profile_lists_the_known_ones(cfg) -> None:
    with pytest.raises(ServingConfigurationError) as info:
        resolve(profile="nope")
    message = str(info.value)
    assert "'nope'" in message
    for known in ("sp", "pat"):
        assert known in message
    assert "dapi" not in message
    assert "sp-secret" not in message


def test_default_profile_named_explicitly(cfg) -> None:
    assert token_of(resolve(profile="DEFAULT")) == "dapi-default"


def test_explicit_default_profile_missing_is_an_error(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cfg"
    path.write_text("[only]\nhost = https://only.example.com\ntoken = dapi-only\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    assert resolve().credential is None  # no [DEFAULT] and none named: nothing, no error
    with pytest.raises(ServingConfigurationError, match="DEFAULT"):
        resolve(profile="DEFAULT")


def test_unparsable_config_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cfg"
    path.write_text("this is not = an ini file\n[DEFAULT\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    with pytest.raises(ServingConfigurationError, match="cannot parse"):
        resolve()


# -- conflicts -------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["arguments", "environment", "profile"])
def test_token_and_client_credentials_in_one_layer_is_an_error(layer, tmp_path, monkeypatch):
    kwargs = {}
    if layer == "arguments":
        kwargs = {
            "token": SecretStr("dapi-x"),
            "client_id": "cid",
            "client_secret": SecretStr("csecret"),
        }
    elif layer == "environment":
        monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-x")
        monkeypatch.setenv("DATABRICKS_CLIENT_ID", "cid")
        monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "csecret")
    else:
        path = tmp_path / "cfg"
        path.write_text("[both]\ntoken = dapi-x\nclient_id = cid\nclient_secret = csecret\n")
        monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
        kwargs = {"profile": "both"}
    with pytest.raises(ServingConfigurationError, match="both a token and OAuth") as info:
        resolve(host="h.example.com", **kwargs)
    assert layer in str(info.value)
    assert "dapi-x" not in str(info.value)
    assert "csecret" not in str(info.value)


def test_client_id_without_secret_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "cid")
    with pytest.raises(ServingConfigurationError, match="without client_secret"):
        resolve(host="h.example.com")


def test_client_secret_without_id_is_an_error() -> None:
    with pytest.raises(ServingConfigurationError, match="without client_id") as info:
        resolve(host="h.example.com", client_secret=SecretStr("csecret"))
    assert "csecret" not in str(info.value)


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("dbc-1.cloud.example.com", "https://dbc-1.cloud.example.com"),
        ("https://dbc-1.cloud.example.com/", "https://dbc-1.cloud.example.com"),
        ("https://dbc-1.cloud.example.com//", "https://dbc-1.cloud.example.com"),
        ("  https://dbc-1.cloud.example.com  ", "https://dbc-1.cloud.example.com"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["ftp://x.example.com", "https://", "https://x.example.com/?a=1", "https://x.com/#f"]
)
def test_normalize_url_refuses_non_http_urls(bad: str) -> None:
    with pytest.raises(ServingConfigurationError):
        normalize_url(bad)


def test_host_from_profile_is_normalised(cfg) -> None:
    assert resolve(profile="pat").host == "https://pat.example.com"


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:1", True),
        ("http://127.5.6.7", True),
        ("http://[::1]:8000", True),
        ("http://localhost:8000", True),
        ("http://api.localhost", True),
        ("http://10.0.0.1", False),
        ("http://example.invalid", False),
        ("http://127.0.0.1.example.com", False),
        ("http://localhost.example.com", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


# -- through a client object: lazy resolution ------------------------------------------


def test_construction_needs_no_configuration() -> None:
    client = Client(model="my-endpoint")
    assert client.endpoint == "my-endpoint"
    assert client._own is None


def test_first_request_without_credentials_names_the_variables(server: ServingTestServer) -> None:
    client = Client(model="my-endpoint", host=server.url)
    with pytest.raises(ServingConfigurationError) as info:
        client.transport.invoke("llm/v1/chat", client.endpoint, {"messages": []})
    message = str(info.value)
    for variable in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        assert variable in message
    assert server.requests == []


def test_first_request_without_host_names_the_variable() -> None:
    client = Client(model="my-endpoint", token=SecretStr("dapi-x"))
    with pytest.raises(ServingConfigurationError, match="DATABRICKS_HOST"):
        client.transport.invoke("llm/v1/chat", client.endpoint, {})


def test_client_resolves_from_environment_on_first_use(serving_env: ServingTestServer) -> None:
    serving_env.reply("/serving-endpoints/ep/invocations", Reply.json({"ok": True}))
    client = Client(model="ep")
    assert client.transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}
    (request,) = serving_env.requests
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_client_resolves_from_profile(server: ServingTestServer, tmp_path, monkeypatch) -> None:
    path = tmp_path / "cfg"
    path.write_text(f"[local]\nhost = {server.url}/\ntoken = dapi-profile\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))
    server.reply("/serving-endpoints/ep/invocations", Reply.json({"ok": True}))
    client = Client(model="ep", profile="local")
    assert client.transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}
    assert server.requests[0].headers["authorization"] == "Bearer dapi-profile"


def test_changing_a_field_rebuilds_the_transport(server: ServingTestServer) -> None:
    server.reply("/serving-endpoints/ep/invocations", Reply.json({"ok": True}))
    client = Client(model="ep", host=server.url, token=SecretStr("dapi-one"))
    client.transport.invoke("llm/v1/chat", "ep", {})
    client.token = SecretStr("dapi-two")
    client.transport.invoke("llm/v1/chat", "ep", {})
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer dapi-one",
        "Bearer dapi-two",
    ]


def test_base_url_never_takes_workspace_credentials_from_the_environment(
    server: ServingTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A DATABRICKS_TOKEN (or profile) belongs to the workspace, not to a third-party server."""
    cfg = tmp_path / "databrickscfg"
    cfg.write_text("[DEFAULT]\nhost = https://example.invalid\ntoken = dapi-from-profile\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-workspace-secret")
    server.reply("/v1/embeddings", Reply.json({"data": [{"index": 0, "embedding": [1.0]}]}))
    server.reply("/v1/chat/completions", Reply.json(chat_response()))
    from langchain_servingx import ChatServing

    ChatServing(endpoint="m", base_url=f"{server.url}/v1").invoke("x")
    assert "authorization" not in server.requests[-1].headers
    ChatServing(endpoint="m", base_url=f"{server.url}/v1", api_key="sk-explicit").invoke("x")
    assert server.requests[-1].headers["authorization"] == "Bearer sk-explicit"
