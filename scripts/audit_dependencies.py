"""Dependency audit of fraudstream's installed dependency closure with pip-audit (run by ``make test``).

What is audited: every distribution that ``fraudstream`` (with its ``test`` extra) requires, transitively, at the
version installed here, pinned into a requirements file and given to ``pip-audit --no-deps --disable-pip`` (nothing
is resolved or downloaded; only the vulnerability service is asked).

Outcome (exit status):

* 1 when a dependency has a known vulnerability that a newer release fixes (the build fails);
* 0 with a warning per known vulnerability without a fix;
* 0 with a loud ``DEPENDENCY AUDIT NOT DONE`` banner when the vulnerability service cannot be reached or answers
  for no package (an offline CI machine must not fail for that, nor pass as if audited);
  ``FRAUDSTREAM_AUDIT_REQUIRED=1`` turns that case into a failure (exit 2);
* ``FRAUDSTREAM_AUDIT_IGNORE=ID[,ID...]`` accepts listed vulnerability ids (reviewed, documented exceptions).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT_DISTRIBUTION = "fraudstream"
ROOT_EXTRAS = ("test", "demo")
#: Longest run of pip-audit (s) before the audit is reported as not done.
AUDIT_TIMEOUT_S = 300
#: Words in pip-audit's error output that mean the vulnerability service was not reached.
UNREACHABLE = re.compile(r"ConnectionError|NameResolution|Max retries|timed out|Temporary failure|"
                         r"Network is unreachable|SSLError|ProxyError|HTTPError", re.I)
BANNER = "=" * 100


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(root: str = ROOT_DISTRIBUTION, extras: tuple[str, ...] = ROOT_EXTRAS) -> dict[str, str]:
    """Installed distributions ``root`` needs (with ``extras``), transitively: canonical name -> version."""
    from packaging.requirements import Requirement  # ships with pip-audit and setuptools

    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = canonical(dist.metadata["Name"])
        if key in found and not wanted:
            continue
        found[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in wanted or ("",)):
                continue  # another platform's, or an extra not asked for
            if canonical(req.name) not in found:
                todo.append((req.name, tuple(req.extras)))
    found.pop(canonical(root), None)
    return found


@dataclass
class Verdict:
    """What the audit found, and the exit status it gives."""

    status: int
    lines: list[str] = field(default_factory=list)


def judge(report: dict | None, returncode: int, stderr: str, ignore: set[str], required: bool) -> Verdict:
    """Turn pip-audit's JSON report (None: none written), exit status and error output into a verdict."""
    if report is None or "dependencies" not in report:
        reason = next((line.strip() for line in reversed(stderr.splitlines()) if UNREACHABLE.search(line)), "")
        if reason or returncode != 0:
            return not_done(f"pip-audit exited {returncode}: {reason or stderr.strip()[-300:] or 'no report'}",
                            required)
        return not_done("pip-audit wrote no report", required)
    deps = report["dependencies"]
    audited = [d for d in deps if "skip_reason" not in d]
    skipped = [d for d in deps if "skip_reason" in d]
    if not audited:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        return not_done(f"the vulnerability service answered for none of {len(deps)} packages ({'; '.join(reasons)})",
                        required)
    fixable, unfixed, accepted = [], [], []
    for dep in audited:
        for vuln in dep.get("vulns", []):
            text = f"{dep['name']} {dep['version']}: {vuln['id']}"
            if vuln["id"] in ignore or any(a in ignore for a in vuln.get("aliases", [])):
                accepted.append(text + " (accepted in FRAUDSTREAM_AUDIT_IGNORE)")
            elif vuln.get("fix_versions"):
                fixable.append(text + f" fixed in {', '.join(vuln['fix_versions'])}")
            else:
                unfixed.append(text + " (no fixed release yet)")
    lines = [f"dependency audit: {len(audited)} packages audited, {len(skipped)} not known to the service"]
    lines += [f"  VULNERABLE: {t}" for t in fixable] + [f"  warning: {t}" for t in unfixed + accepted]
    if fixable:
        lines.append(f"dependency audit FAILED: {len(fixable)} known vulnerabilities with a fix; upgrade them")
        return Verdict(1, lines)
    lines.append("dependency audit passed: no known vulnerability with a fix")
    return Verdict(0, lines)


def not_done(reason: str, required: bool) -> Verdict:
    lines = [BANNER, f"DEPENDENCY AUDIT NOT DONE: {reason}.",
             "Nothing is known about vulnerabilities of the dependencies in this run; audit on a machine that reaches "
             "the vulnerability service (`python scripts/audit_dependencies.py`).", BANNER]
    if required:
        lines.append("FRAUDSTREAM_AUDIT_REQUIRED is set: failing.")
    return Verdict(2 if required else 0, lines)


def run_pip_audit(pins: dict[str, str]) -> tuple[dict | None, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(requirements), "--no-deps",
                   "--disable-pip", "--progress-spinner", "off", "--format", "json", "--output", str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=AUDIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, -1, f"timed out after {AUDIT_TIMEOUT_S} s"
        try:
            report = json.loads(out.read_text())
        except (OSError, ValueError):
            report = None
        return report, done.returncode, done.stderr


def main() -> int:
    try:
        import pip_audit  # noqa: F401
    except ImportError:
        print("dependency audit: pip-audit is not installed (it is in the `test` extra: pip install -e '.[test]')",
              file=sys.stderr)
        return 1
    pins = dependency_closure()
    if not pins:
        print(f"dependency audit: {ROOT_DISTRIBUTION} is not installed", file=sys.stderr)
        return 1
    report, returncode, stderr = run_pip_audit(pins)
    ignore = {v.strip() for v in os.environ.get("FRAUDSTREAM_AUDIT_IGNORE", "").split(",") if v.strip()}
    required = os.environ.get("FRAUDSTREAM_AUDIT_REQUIRED", "").strip().lower() in {"1", "true", "yes"}
    verdict = judge(report, returncode, stderr, ignore, required)
    print("\n".join(verdict.lines), file=sys.stderr)
    return verdict.status


if __name__ == "__main__":
    sys.exit(main())
