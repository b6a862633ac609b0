"""sanspi's pytest plugin (entry point ``pytest11``), loaded in any project
that installs sanspi.

- the ``clause`` marker, which names the spec clauses a test checks;
- the ``sanspi_conformance`` fixture: another provider's test suite runs the
  lockstep campaign on its own providers with it::

      def test_my_provider_conforms(sanspi_conformance):
          sanspi_conformance(lambda: (MyProvider(0), MyProvider(1)))

  It keeps what it finds in the example database (conform/exampledb.py; by
  default under ``$SANSPI_CACHE/hypothesis``, ``--sanspi-database`` moves
  it), in a place of its own for each factory: a divergence found once is
  the first example the next run tries. A run with ``seed`` neither reads
  nor writes it.

Imports stay inside the fixture: loading this plugin must cost nothing
(pytest loads it in every run, inside the lab's slow guest too).
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "clause(id, ...): the spec clause(s) a test checks")


def pytest_addoption(parser):
    group = parser.getgroup("sanspi")
    group.addoption("--sanspi-profile", default="ci", choices=("ci", "long"),
                    help="sizes of sanspi_conformance campaigns (default: ci)")
    group.addoption("--sanspi-database", default=None, metavar="DIR|redis://HOST:PORT/DB",
                    help="the example database of sanspi_conformance campaigns (default: $SANSPI_CACHE/hypothesis)")


@pytest.fixture
def sanspi_conformance(request, tmp_path):
    """A function: run the campaign on a provider factory; fail on a divergence."""
    from sanspi.conform.campaign import PROFILES, campaign_targets, model_config, run_campaign
    from sanspi.conform.exampledb import DatabaseError, open_database
    from sanspi.conform.providers import ProviderError, campaign_pages, probe
    from sanspi.conform.report import factory_spec, write

    def check(factory, examples: int | None = None, steps: int | None = None, seed: int | None = None,
              pages: int | None = None):
        sizes = dict(PROFILES[request.config.getoption("--sanspi-profile")])
        sizes.update({k: v for k, v in (("examples", examples), ("steps", steps)) if v is not None})
        try:
            probed = probe(factory)
            cfg = model_config(probed.capabilities, pages=campaign_pages(probed, pages))
        except ProviderError as exc:
            pytest.fail(f"sanspi_conformance: {exc}", pytrace=False)
        # the example database, this factory's own place in it: a divergence
        # found once is tried first next time
        spec = factory_spec(factory)
        place = spec or f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', probed.name)}"
        try:
            db = open_database(request.config.getoption("--sanspi-database"), place, cfg)
        except DatabaseError as exc:
            pytest.fail(f"sanspi_conformance: {exc}", pytrace=False)
        result = run_campaign(factory, cfg, sizes["examples"], sizes["steps"], seed, database=db, name=probed.name)
        if not result.ok:
            files = write(result, spec, cfg, campaign_targets(cfg), tmp_path, {**sizes, "seed": seed})
            trace = "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(result.trace))
            pytest.fail(f"{probed.name} diverges from the model: {result.divergence}\n"
                        f"found in example {result.found_example}; shrunk trace:\n{trace}\n"
                        f"report: {files[0]}\nrunnable divergence test: {files[-1]}", pytrace=False)
        return result

    return check
