"""pytest plugin: the ``clause`` marker (see spec/) and, later, the conformance fixture."""


def pytest_configure(config):
    config.addinivalue_line("markers", "clause(id, ...): the spec clause(s) a test checks")
