"""Which webhook targets are refused: private, loopback, link-local (the metadata service), multicast,
unspecified, plain http; and what an allow-list lets through."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.config import Settings
from backend.webhook_targets import AllowList, TargetRefused, check

NONE = AllowList.parse("")
LOOPBACK = AllowList.parse("127.0.0.0/8, ::1/128")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.0.1/hook",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://100.64.0.1/hook",
    ],
)
async def test_non_public_targets_are_refused_without_an_allow_list(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check(url, NONE)


@pytest.mark.parametrize(
    "url",
    ["ftp://8.8.8.8/x", "http://8.8.8.8/hook", "https://user:pw@8.8.8.8/hook", "/relative", "https://"],
)
async def test_other_schemes_plain_http_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check(url, NONE)


async def test_a_public_https_address_passes_and_is_the_one_to_connect_to() -> None:
    target = await check("https://8.8.8.8:8443/hook?x=1", NONE)
    assert (target.scheme, target.host, target.port, [str(a) for a in target.addresses]) == (
        "https",
        "8.8.8.8",
        8443,
        ["8.8.8.8"],
    )


async def test_the_allow_list_lets_loopback_through_and_nothing_else() -> None:
    assert (await check("http://127.0.0.1:9/hook", LOOPBACK)).port == 9
    assert [str(a) for a in (await check("http://localhost:9/hook", LOOPBACK)).addresses] in (
        ["127.0.0.1"],
        ["127.0.0.1", "::1"],
    )
    for url in ("http://169.254.169.254/", "https://10.0.0.1/", "http://8.8.8.8/"):
        with pytest.raises(TargetRefused):
            await check(url, LOOPBACK)


async def test_an_allow_listed_host_name_passes_whatever_it_resolves_to() -> None:
    assert (await check("http://localhost:9/hook", AllowList.parse("LocalHost"))).host == "localhost"


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"webhook_secret": "not-whsec"}, "WEBHOOK_SECRET"),
        ({"webhook_secret": "whsec_c2hvcnQ="}, "WEBHOOK_SECRET"),
        ({"webhook_timeout_s": 10, "webhook_lease_s": 10}, "WEBHOOK_LEASE_S"),
    ],
)
def test_webhook_settings_are_checked_at_start_up(values: dict[str, object], variable: str) -> None:
    with pytest.raises(ValidationError, match=variable):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
