"""`sanspi lab peer-tests`: reading unittest's output, recording in README."""

from __future__ import annotations

from sanspi.lab import peer

SAMPLE = """\
test_a (tests.test_mr.MRTest.test_a) ... ok
test_b (tests.test_mr.MRTest.test_b)
Checks something long ... skipped 'ODP is not supported - No ODP caps'
test_c (tests.test_mr.MRTest.test_c) ... skipped 'ODP is not supported - No ODP caps'
test_d (tests.test_qpex.QpExTestCase.test_d) ... ERROR
test_e (tests.test_cq.CQTest.test_e) ... FAIL

======================================================================
ERROR: test_d (tests.test_qpex.QpExTestCase.test_d)
----------------------------------------------------------------------
Traceback (most recent call last):
pyverbs.pyverbs_error.PyverbsRDMAError: Completion status is local QP operation error

======================================================================
FAIL: test_e (tests.test_cq.CQTest.test_e)
----------------------------------------------------------------------
AssertionError

----------------------------------------------------------------------
Ran 5 tests in 1.250s

FAILED (failures=1, errors=1, skipped=2)
"""


def test_counts_come_from_the_closing_lines():
    res = peer.parse_unittest(SAMPLE)
    assert res.finished
    assert (res.ran, res.failures, res.errors, res.skipped, res.passed) == (5, 1, 1, 2, 1)
    assert res.failed == ["ERROR test_qpex.QpExTestCase.test_d", "FAIL test_cq.CQTest.test_e"]
    assert res.skip_reasons == {"ODP is not supported - No ODP caps": 2}


def test_an_unfinished_run_is_not_finished():
    res = peer.parse_unittest(SAMPLE.split("Ran 5")[0])
    assert not res.finished and res.ran == 0


def test_a_clean_run():
    res = peer.parse_unittest("h0| Ran 3 tests in 0.1s\nh0| \nh0| OK (skipped=1)\n")
    assert res.finished and res.passed == 2 and res.skipped == 1 and res.failed == []


def test_readme_section_is_added_then_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# sanspi\n\nIntro.\n\n## Later\n\nKeep me.\n")
    res = peer.parse_unittest(SAMPLE)
    one = peer.readme_section(res, kernel="6.1.0-56-amd64", version="44.0-2", device="rxe0",
                              wall=42, when="2026-11-25")
    peer.record_in_readme(readme, one)
    text = readme.read_text()
    assert text.startswith("# sanspi\n\nIntro.\n") and "Keep me." in text
    assert text.count(f"## {peer.README_TITLE}") == 1
    assert "5 run: 1 passed, 1 failed, 1 errors, 2 skipped" in text
    two = one.replace("5 run", "6 run")
    peer.record_in_readme(readme, two)
    text = readme.read_text()
    assert text.count(f"## {peer.README_TITLE}") == 1 and "6 run" in text and "5 run" not in text
    assert "Keep me." in text


def test_readme_is_created_when_missing(tmp_path):
    readme = tmp_path / "README.md"
    section = peer.readme_section(peer.parse_unittest(SAMPLE), kernel="k", version="v",
                                  device="rxe0", wall=1, when="d")
    peer.record_in_readme(readme, section)
    assert readme.read_text() == section


def test_suite_command_uses_the_lab_device():
    from pathlib import Path
    cmd = peer.suite_command(Path("/c/tests"))
    assert cmd[:2] == ["sh", "-c"]
    assert '--dev "$SANSPI_LAB_DEVICE" --gid "$SANSPI_LAB_GID" -v' in cmd[2]
    assert "/c/tests/run_tests.py" in cmd[2]


def test_skip_reasons_in_either_quote():
    text = ("t1 (tests.a.B.t1) ... skipped \"Device rxe0 doesn't have net interface\"\n"
            "t2 (tests.a.B.t2) ... skipped 'No ODP'\nRan 2 tests in 0.1s\n\nOK (skipped=2)\n")
    res = peer.parse_unittest(text)
    assert res.skip_reasons == {"Device rxe0 doesn't have net interface": 1, "No ODP": 1}
    section = peer.readme_section(res, kernel="k", version="v", device="rxe0", wall=1, when="d")
    assert "no `device`" in section


def test_passes_are_counted_by_module():
    res = peer.parse_unittest(SAMPLE)
    assert res.passed_by_module == {"test_mr": 1}
    text = "test_t (tests.test_qp.Q.test_t)\nDoc line ... ok\ntest_u (tests.test_qp.Q.test_u) ... ok\n"
    assert peer.parse_unittest(text).passed_by_module == {"test_qp": 2}
