"""The dependency audit's verdicts (scripts/audit_dependencies.py): fail on a fixable vulnerability, say loudly when
the vulnerability service could not be asked, never pass silently."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_dependencies.py"
spec = importlib.util.spec_from_file_location("audit_dependencies", SCRIPT)
audit = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = audit  # dataclasses look their module up
spec.loader.exec_module(audit)


def dep(name, version="1.0", vulns=(), skip=None):
    out = {"name": name, "version": version}
    if skip:
        out["skip_reason"] = skip
    else:
        out["vulns"] = list(vulns)
    return out


def test_a_vulnerability_with_a_fix_fails_the_build():
    report = {"dependencies": [dep("a"), dep("b", "2.0", [{"id": "PYSEC-1", "fix_versions": ["2.1"], "aliases": []}])]}
    verdict = audit.judge(report, 1, "", set(), required=False)
    assert verdict.status == 1
    assert any("b 2.0: PYSEC-1 fixed in 2.1" in line for line in verdict.lines)


def test_a_vulnerability_without_a_fix_or_accepted_warns_only():
    report = {"dependencies": [dep("a", vulns=[{"id": "GHSA-x", "fix_versions": [], "aliases": []}]),
                               dep("b", vulns=[{"id": "PYSEC-2", "fix_versions": ["9"], "aliases": ["CVE-1"]}])]}
    verdict = audit.judge(report, 1, "", {"CVE-1"}, required=False)
    assert verdict.status == 0
    assert any("GHSA-x (no fixed release yet)" in line for line in verdict.lines)
    assert any("accepted" in line for line in verdict.lines)


@pytest.mark.parametrize("report, rc, stderr", [
    (None, 1, "requests.exceptions.ConnectionError: ... NameResolutionError(... 'api.osv.dev' ...)"),
    ({"dependencies": [dep("a", skip="Dependency not found on PyPI and could not be audited: a (1.0)")]}, 0, ""),
    (None, -1, "timed out after 300 s"),
])
def test_an_unreachable_service_is_reported_loudly_and_fails_only_when_required(report, rc, stderr):
    relaxed = audit.judge(report, rc, stderr, set(), required=False)
    assert relaxed.status == 0
    assert any("DEPENDENCY AUDIT NOT DONE" in line for line in relaxed.lines)
    assert audit.judge(report, rc, stderr, set(), required=True).status == 2


def test_a_clean_report_passes_and_says_how_much_was_audited():
    report = {"dependencies": [dep("a"), dep("b"), dep("c", skip="not found")]}
    verdict = audit.judge(report, 0, "", set(), required=False)
    assert verdict.status == 0
    assert verdict.lines[0] == "dependency audit: 2 packages audited, 1 not known to the service"


def test_the_closure_holds_the_runtime_and_test_dependencies_at_their_installed_versions():
    pins = audit.dependency_closure()
    for name in ("numpy", "xgboost", "aiokafka", "redis", "pytest", "hypothesis", "pip-audit"):
        assert name in pins, name
    assert "fraudstream" not in pins
