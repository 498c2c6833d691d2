"""The Amazon ECR credential provider (regcopy.ecr): host parsing, the GetAuthorizationToken answer, caching
and refresh, single flight, error mapping. A real boto3 ECR client under botocore's Stubber: no network."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from regcopy.credentials import ANONYMOUS, ChainCredentials, Credential, DockerConfigCredentials, StaticCredentials
from regcopy.ecr import EcrClient, EcrCredentials, EcrRegistry, _boto3_client, parse_ecr_host
from regcopy.errors import ConfigError, CredentialError

ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
PASSWORD = "eyJwYXlsb2FkIjoiZWNyLXBhc3N3b3JkIn0-very-secret"
TWELVE_HOURS = 12 * 3600.0


def token(password: str = PASSWORD, user: str = "AWS") -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def answer(password: str = PASSWORD, expires_in: float = TWELVE_HOURS, raw: str | None = None) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return {"authorizationData": [{
        "authorizationToken": raw if raw is not None else token(password),
        "expiresAt": expires,
        "proxyEndpoint": f"https://{HOST}",
    }]}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake static AWS credentials and no config files, so nothing on this machine is read."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def ecr_client(aws_env: None) -> Iterator[tuple[Any, Stubber]]:
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLEEXAMPLE", aws_secret_access_key="fake",
                                    region_name="us-east-1")
    client = session.client("ecr", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_call(stubber: Stubber, response: Mapping[str, Any], account: str = ACCOUNT) -> None:
    stubber.add_response("get_authorization_token", dict(response), expected_params={"registryIds": [account]})


class Counting:
    """Wraps a client: counts calls and the regions asked for, optionally slow (to overlap callers)."""

    def __init__(self, client: EcrClient, delay: float = 0.0) -> None:
        self.client = client
        self.delay = delay
        self.calls = 0
        self.factory_calls: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def factory(self, region: str, fips: bool) -> EcrClient:
        self.factory_calls.append((region, fips))
        return self

    def get_authorization_token(self, **kwargs: Any) -> Mapping[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.client.get_authorization_token(**kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------ hosts


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (HOST, EcrRegistry(ACCOUNT, "us-east-1")),
        (f"{ACCOUNT}.dkr.ecr.eu-west-3.amazonaws.com:443", EcrRegistry(ACCOUNT, "eu-west-3")),
        (f"{ACCOUNT}.DKR.ECR.AP-SOUTHEAST-2.AMAZONAWS.COM", EcrRegistry(ACCOUNT, "ap-southeast-2")),
        (f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com", EcrRegistry(ACCOUNT, "us-gov-west-1", fips=True)),
        (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", EcrRegistry(ACCOUNT, "cn-north-1")),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.", EcrRegistry(ACCOUNT, "us-east-1")),
        ("public.ecr.aws", None),  # ECR Public: anonymous pulls, another API
        ("docker.io", None),
        ("127.0.0.1:5000", None),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com:5000", None),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.evil.example", None),
        (f"evil.example/{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", None),
        (f"x{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", None),
        ("12345.dkr.ecr.us-east-1.amazonaws.com", None),
        (f"{ACCOUNT}.dkr.ecr..amazonaws.com", None),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.co", None),
        ("", None),
    ],
)
def test_parse_ecr_host(host: str, expected: EcrRegistry | None) -> None:
    assert parse_ecr_host(host) == expected


@given(st.text())
def test_parse_ecr_host_never_raises(host: str) -> None:
    result = parse_ecr_host(host)
    assert result is None or isinstance(result, EcrRegistry)


@given(
    account=st.from_regex(r"[0-9]{12}", fullmatch=True),
    region=st.from_regex(r"[a-z]{2}(-gov)?-[a-z]{4,9}-[1-9]", fullmatch=True),
    fips=st.booleans(),
    cn=st.booleans(),
)
def test_parse_ecr_host_round_trips(account: str, region: str, fips: bool, cn: bool) -> None:
    host = f"{account}.dkr.ecr{'-fips' if fips else ''}.{region}.amazonaws.com{'.cn' if cn else ''}"
    assert parse_ecr_host(host) == EcrRegistry(account, region, fips)


# ------------------------------------------------------------------------------------------ tokens


async def test_token_is_decoded_and_cached(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer())
    counting = Counting(client)
    store = EcrCredentials(client_factory=counting.factory)
    for _ in range(20):
        assert await store.get(HOST) == Credential(username="AWS", password=PASSWORD)
    assert counting.calls == 1
    assert counting.factory_calls == [("us-east-1", False)]
    assert PASSWORD not in repr(await store.get(HOST))


async def test_refreshed_before_expiry(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer("first"))
    expect_call(stubber, answer("second"))
    clock = Clock()
    store = EcrCredentials(client_factory=lambda region, fips: client, margin=900, clock=clock)
    assert (await store.get(HOST)).password == "first"
    clock.now += TWELVE_HOURS - 900 - 60  # a minute before the margin: still the cached token
    assert (await store.get(HOST)).password == "first"
    clock.now += 61
    assert (await store.get(HOST)).password == "second"


async def test_forget_fetches_a_new_token(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer("rejected"))
    expect_call(stubber, answer("fresh"))
    store = EcrCredentials(client_factory=lambda region, fips: client)
    assert (await store.get(HOST)).password == "rejected"
    store.forget(HOST.upper())  # hosts are case-insensitive
    assert (await store.get(HOST)).password == "fresh"


async def test_expiry_in_the_past_is_still_cached_a_minute(ecr_client: tuple[Any, Stubber]) -> None:
    # A local clock far ahead of AWS's must not turn every request into an API call.
    client, stubber = ecr_client
    expect_call(stubber, answer("skewed", expires_in=-3600))
    expect_call(stubber, answer("next"))
    clock = Clock()
    store = EcrCredentials(client_factory=lambda region, fips: client, clock=clock)
    assert (await store.get(HOST)).password == "skewed"
    clock.now += 59
    assert (await store.get(HOST)).password == "skewed"
    clock.now += 1
    assert (await store.get(HOST)).password == "next"


async def test_concurrent_gets_make_one_call(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer())
    counting = Counting(client, delay=0.2)
    store = EcrCredentials(client_factory=counting.factory)
    got: list[Credential] = []

    async def get() -> None:
        got.append(await store.get(HOST))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(get)
    assert counting.calls == 1
    assert got == [Credential("AWS", PASSWORD)] * 10


async def test_one_client_per_region(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    other = "210987654321"
    expect_call(stubber, answer("a"))
    expect_call(stubber, answer("b"), account=other)
    expect_call(stubber, answer("c"))
    counting = Counting(client)
    store = EcrCredentials(client_factory=counting.factory)
    assert (await store.get(HOST)).password == "a"
    assert (await store.get(f"{other}.dkr.ecr.us-east-1.amazonaws.com")).password == "b"
    assert (await store.get(f"{ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com")).password == "c"
    assert counting.factory_calls == [("us-east-1", False), ("us-east-1", True)]


async def test_other_hosts_ask_the_fallback() -> None:
    def factory(region: str, fips: bool) -> EcrClient:
        raise AssertionError("no ECR call for a non-ECR host")

    forgotten: list[str] = []

    class Fallback(StaticCredentials):
        def forget(self, registry: str) -> None:
            forgotten.append(registry)

    store = EcrCredentials(Fallback({"reg:5000": ("u", "p")}), client_factory=factory)
    assert await store.get("reg:5000") == Credential("u", "p")
    assert await store.get("docker.io") == ANONYMOUS
    store.forget("reg:5000")
    assert forgotten == ["reg:5000"]
    assert await EcrCredentials(client_factory=factory).get("reg:5000") == ANONYMOUS
    EcrCredentials(client_factory=factory).forget("reg:5000")


async def test_hosts_predicate_maps_any_host(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer(), account="000000000001")
    store = EcrCredentials(client_factory=lambda region, fips: client,
                           hosts=lambda h: EcrRegistry("000000000001", "us-east-1") if h == "127.0.0.1:5000" else None)
    assert (await store.get("127.0.0.1:5000")).username == "AWS"
    assert await store.get(HOST) == ANONYMOUS  # the predicate decides, not the name


def test_margin_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="margin"):
        EcrCredentials(margin=-1)


# ------------------------------------------------------------------------------------------ errors


async def test_api_error_is_a_credential_error(ecr_client: tuple[Any, Stubber]) -> None:
    client, stubber = ecr_client
    stubber.add_client_error("get_authorization_token", service_error_code="AccessDeniedException",
                             service_message="User: arn:aws:iam::123456789012:user/ci is not authorized",
                             http_status_code=400)
    expect_call(stubber, answer())
    store = EcrCredentials(client_factory=lambda region, fips: client)
    with pytest.raises(CredentialError, match="AccessDeniedException: User: arn:aws:iam::") as info:
        await store.get(HOST)
    assert info.value.registry == HOST
    assert HOST in str(info.value)
    assert (await store.get(HOST)).password == PASSWORD  # a failure is not cached


async def test_missing_aws_credentials(aws_env: None) -> None:
    class NoCreds:
        def get_authorization_token(self, **kwargs: Any) -> Mapping[str, Any]:
            raise NoCredentialsError()

    store = EcrCredentials(client_factory=lambda region, fips: NoCreds())
    with pytest.raises(CredentialError, match="NoCredentialsError: Unable to locate credentials"):
        await store.get(HOST)


@pytest.mark.parametrize(
    ("response", "why"),
    [
        ({"authorizationData": []}, "no authorizationData"),
        ({}, "no authorizationData"),
        ({"authorizationData": [{"expiresAt": datetime.now(UTC)}]}, "no authorizationToken"),
        (answer(raw="!!not base64!!" + PASSWORD), "not base64"),
        (answer(raw=base64.b64encode(PASSWORD.encode()).decode()), "does not decode to user:password"),
        (answer(raw=token(password="")), "does not decode to user:password"),
    ],
)
async def test_malformed_answers(response: Mapping[str, Any], why: str) -> None:
    class Fake:
        def get_authorization_token(self, **kwargs: Any) -> Mapping[str, Any]:
            return response

    store = EcrCredentials(client_factory=lambda region, fips: Fake())
    with pytest.raises(CredentialError, match=why) as info:
        await store.get(HOST)
    assert PASSWORD not in str(info.value)


async def test_missing_boto3_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    store = EcrCredentials()
    with pytest.raises(CredentialError, match=r"need boto3: install regcopy\[ecr\]"):
        await store.get(HOST)
    assert await store.get("reg:5000") == ANONYMOUS  # boto3 only matters for ECR hosts


async def test_default_credentials_without_boto3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from regcopy.credentials import default_credentials

    monkeypatch.setitem(sys.modules, "boto3", None)
    authfile = tmp_path / "auth.json"
    other = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    logged_in = base64.b64encode(b"AWS:from-docker-login").decode()
    authfile.write_text(json.dumps({"auths": {other: {"auth": logged_in}, "reg": {"auth": logged_in}}}))
    store = default_credentials(authfile)
    assert (await store.get(other)).password == "from-docker-login"  # the file wins: no boto3 needed
    assert (await store.get("reg")).password == "from-docker-login"
    with pytest.raises(CredentialError, match=r"regcopy\[ecr\]"):
        await store.get(HOST)  # an ECR host the files do not know


async def test_config_files_win_over_the_provider(ecr_client: tuple[Any, Stubber], tmp_path: Path) -> None:
    client, stubber = ecr_client
    expect_call(stubber, answer())
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {HOST: {"auth": base64.b64encode(b"AWS:filed").decode()}}}))
    provider = EcrCredentials(client_factory=lambda region, fips: client)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert (await ChainCredentials(DockerConfigCredentials([authfile]), provider).get(HOST)).password == "filed"
    assert (await ChainCredentials(DockerConfigCredentials([empty]), provider).get(HOST)).password == PASSWORD


def test_default_client_factory_uses_the_region_and_fips_endpoint(aws_env: None) -> None:
    plain = _boto3_client("eu-west-1", False)
    fips = _boto3_client("us-gov-west-1", True)
    assert plain.meta.endpoint_url == "https://api.ecr.eu-west-1.amazonaws.com"  # type: ignore[attr-defined]
    assert fips.meta.endpoint_url == "https://ecr-fips.us-gov-west-1.amazonaws.com"  # type: ignore[attr-defined]
