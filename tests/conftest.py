"""Fixtures shared by the whole suite live in tests/support/ and are registered here."""

pytest_plugins = [
    "tests.support.aws",
    "tests.support.comfy",
    "tests.support.conditions",
    "tests.support.db",
    "tests.support.backend",
    "tests.support.oidc",
    "tests.support.network",
]
