"""The rxe leg: tests that need a live rxe device.

They run inside the lab (``make test`` does it, or by hand:
``sanspi lab setup`` then ``sanspi lab run -- python -m pytest -m rxe tests/rxe``).
Where no rxe device exists they FAIL, naming that step, and a skip inside
this folder is turned into a failure too: for a reference oracle a skipped
rxe test would pass conformance vacuously.
"""

from __future__ import annotations

import os

import pytest

SETUP_STEP = ("run the rxe leg through `make test`, or `sanspi lab setup` then "
              "`sanspi lab run -- python -m pytest -m rxe tests/rxe` "
              "(two-host tests: `sanspi lab run --topology two-host -- ...`)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "two_host: runs in both guests of `sanspi lab run --topology two-host`")


@pytest.fixture(scope="session")
def verbs():
    """The RDMA helper module (imported here: the host leg has no pyverbs)."""
    try:
        from tests.rxe import rxe_verbs
    except ImportError as exc:
        pytest.fail(f"pyverbs is not importable ({exc}); Debian's python3-pyverbs "
                    f"in a --system-site-packages venv is needed: {SETUP_STEP}", pytrace=False)
    return rxe_verbs


@pytest.fixture(scope="session")
def lab(verbs):
    """The rxe device of this lab run, checked to be up; else a failure."""
    found = verbs.find_device()
    if isinstance(found, str):
        pytest.fail(f"no rxe device: {found}. {SETUP_STEP}", pytrace=False)
    return found


@pytest.fixture(autouse=True)
def _lab_in_report(request: pytest.FixtureRequest) -> None:
    """Reports say where a result came from: kernel and device."""
    for key in ("SANSPI_LAB_KERNEL", "SANSPI_LAB_DEVICE", "SANSPI_LAB_TOPOLOGY", "SANSPI_LAB_HOST"):
        if key in os.environ:
            request.node.user_properties.append((key, os.environ[key]))


def pytest_report_header(config: pytest.Config) -> str:
    return ("rxe lab: kernel {}, device {}, topology {}, host {} of {}".format(
        *(os.environ.get(k, "?") for k in ("SANSPI_LAB_KERNEL", "SANSPI_LAB_DEVICE",
                                          "SANSPI_LAB_TOPOLOGY", "SANSPI_LAB_HOST",
                                          "SANSPI_LAB_HOSTS"))))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"rxe tests are never skipped ({reason}). {SETUP_STEP}"
