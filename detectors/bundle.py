"""Model bundles: one versioned directory per trained cascade, with a manifest and checksums.

Layout of ``<root>/<version>/`` (each scoring stage writes its own files, ``files`` of its registered type; the
shipped stages' are listed)::

    light.json, light_meta.json     light XGBoost model, its parameters and probability calibration
    heavy.json, heavy_meta.json     heavy XGBoost model, same
    anomaly.pkl                     the fitted anomaly detector (pickle: load only bundles you trust)
    rules.json                      the rules in force
    manifest.json                   version, creation time, stages, feature set, thresholds, metrics, data
                                    range, library versions, sha256 of every other file
    manifest.json.sha256            sha256 of manifest.json (``sha256sum -c`` format), so that no field of the
                                    manifest (a threshold, a checksum) changes unnoticed

``<root>/LATEST`` holds the name of the newest version; it is replaced atomically (temp file + rename), so a
reader never sees a half-written pointer, and a version directory is complete before LATEST names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudstream.detectors.cascade.cascade import Cascade
from fraudstream.detectors.cascade.policy import CascadePolicy, Thresholds
from fraudstream.detectors.cascade.registry import DEFAULT_STAGES, STAGE_TYPES
from fraudstream.detectors.features.definition import FEATURE_SET_VERSION, FeatureConfig
from fraudstream.detectors.rules import RuleConfig, RuleSet

MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = MANIFEST + ".sha256"
LATEST = "LATEST"
MANIFEST_FORMAT = 1
ANOMALY_FILE = "anomaly.pkl"
RULES_FILE = "rules.json"


class ModelBundleError(RuntimeError):
    """A model directory that cannot be used; the message says which file and what is wrong."""


@dataclass(frozen=True)
class LoadedBundle:
    """A loaded, verified bundle."""

    cascade: Cascade
    manifest: dict[str, Any]
    version: str
    feature_config: FeatureConfig
    path: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import numpy
    import pyod
    import sklearn
    import xgboost

    return {"xgboost": xgboost.__version__, "pyod": pyod.__version__, "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__}


def _feature_config_to_dict(config: FeatureConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _feature_config_from_dict(data: dict[str, Any]) -> FeatureConfig:
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return FeatureConfig(**values)


def save_bundle(cascade: Cascade, directory: str | Path, manifest_extras: dict[str, Any] | None = None) -> Path:
    """Write ``cascade`` to ``<directory>/<cascade.version>/`` and point ``<directory>/LATEST`` at it.

    ``manifest_extras`` (e.g. training data time range, row counts, imbalance choice) is merged into the
    manifest.  Refuses to overwrite an existing version.  Returns the version directory.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / cascade.version
    if final.exists():
        raise ModelBundleError(f"{final}: version already exists; versions are immutable")
    staging = Path(tempfile.mkdtemp(prefix=f".{cascade.version}.", dir=root))
    try:
        files = [path for stage in cascade.stages for path in stage.save(staging)]
        cascade.rules.config.to_json_file(staging / RULES_FILE)
        files.append(staging / RULES_FILE)
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": cascade.version,
            "stages": list(cascade.stage_names),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "feature_set_version": FEATURE_SET_VERSION,
            "feature_names": cascade.feature_names,
            "feature_config": _feature_config_to_dict(cascade.feature_config),
            "thresholds": cascade.thresholds.to_dict(),
            "use_anomaly": cascade.use_anomaly,
            "metrics": cascade.metrics,
            "libraries": _library_versions(),
        }
        if "anomaly" in cascade.stage_names:
            manifest["anomaly"] = {"method": cascade.anomaly.method, "max_train_rows": cascade.anomaly.max_train_rows}
        manifest.update(manifest_extras or {})
        manifest["files"] = {p.name: _sha256(p) for p in files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
        _write_manifest_checksum(staging)
        os.replace(staging, final)
    except BaseException:
        for p in staging.glob("*"):
            p.unlink()
        staging.rmdir()
        raise
    _write_latest(root, cascade.version)
    return final


def _write_manifest_checksum(directory: Path) -> None:
    (directory / MANIFEST_CHECKSUM).write_text(f"{_sha256(directory / MANIFEST)}  {MANIFEST}\n")


def check_manifest_checksum(directory: Path) -> None:
    """Raise :class:`ModelBundleError` when ``manifest.json`` does not match ``manifest.json.sha256``."""
    where = directory / MANIFEST_CHECKSUM
    try:
        recorded = where.read_text().split()[0].lower()
    except FileNotFoundError:
        raise ModelBundleError(f"{where}: missing; the manifest cannot be verified (retrain, or restore the "
                               "file from where the bundle was published)") from None
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ModelBundleError(f"{where}: unreadable ({exc!r})") from None
    actual = _sha256(directory / MANIFEST)
    if actual != recorded:
        raise ModelBundleError(f"{directory / MANIFEST}: sha256 {actual} does not match {where} ({recorded}); "
                               "the manifest was changed after training")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime, Path)):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write_latest(root: Path, version: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".LATEST.", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST)


def latest_version(root: str | Path) -> str | None:
    """The version ``<root>/LATEST`` names (stripped), or None when ``root`` has no LATEST (a version directory)."""
    try:
        return (Path(root) / LATEST).read_text().strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def resolve_bundle_dir(path: str | Path) -> Path:
    """The version directory ``path`` designates: itself when it holds a manifest, else the one LATEST names."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    latest = path / LATEST
    version = latest_version(path)
    if version is None:
        raise ModelBundleError(f"{path}: neither a model version directory ({MANIFEST}) nor a model root ({LATEST})")
    if not version or "/" in version or version.startswith("."):
        raise ModelBundleError(f"{latest}: invalid version name {version!r}")
    target = path / version
    if not (target / MANIFEST).is_file():
        raise ModelBundleError(f"{latest}: names version {version!r}, but {target / MANIFEST} does not exist")
    return target


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a version directory or root (following LATEST), without loading models."""
    target = resolve_bundle_dir(path)
    try:
        return json.loads((target / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise ModelBundleError(f"{target / MANIFEST}: not valid JSON: {exc}") from None


def check_manifest(manifest: dict[str, Any], directory: Path) -> None:
    """Raise :class:`ModelBundleError` when files, checksums or the feature set do not match this code."""
    check_manifest_checksum(directory)
    where = directory / MANIFEST
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelBundleError(f"{where}: manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    if manifest.get("feature_set_version") != FEATURE_SET_VERSION:
        raise ModelBundleError(
            f"{where}: trained on feature set {manifest.get('feature_set_version')!r}, this code computes "
            f"{FEATURE_SET_VERSION!r}; retrain the model"
        )
    config = _feature_config_from_dict(manifest["feature_config"])
    expected = config.feature_names()
    if manifest.get("feature_names") != expected:
        raise ModelBundleError(
            f"{where}: feature names/order {manifest.get('feature_names')} differ from this code's {expected}"
        )
    files = manifest.get("files") or {}
    for name in (*(f for stage in manifest_stages(manifest, where) for f in STAGE_TYPES[stage].files), RULES_FILE):
        if name not in files:
            raise ModelBundleError(f"{where}: no checksum for required file {name}")
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise ModelBundleError(f"{path}: listed in the manifest but missing")
        actual = _sha256(path)
        if actual != digest:
            raise ModelBundleError(f"{path}: sha256 {actual} does not match the manifest's {digest}")


def manifest_stages(manifest: dict[str, Any], where: Path) -> list[str]:
    """The scoring stages a manifest lists (the shipped ones for a manifest without the entry), all registered."""
    names = manifest.get("stages", list(DEFAULT_STAGES))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelBundleError(f"{where}: 'stages' must be a list of stage names, got {names!r}")
    unknown = [n for n in names if n not in STAGE_TYPES]
    if unknown:
        raise ModelBundleError(f"{where}: stage(s) {unknown} are not registered in this code "
                               f"(registered: {list(STAGE_TYPES)})")
    return names


def load_bundle(path: str | Path) -> LoadedBundle:
    """Load and verify a bundle from a version directory, or from a root (following LATEST)."""
    directory = resolve_bundle_dir(path)
    manifest = read_manifest(directory)
    check_manifest(manifest, directory)
    config = _feature_config_from_dict(manifest["feature_config"])
    feature_names = manifest["feature_names"]
    stages = [STAGE_TYPES[name].load(directory) for name in manifest_stages(manifest, directory / MANIFEST)]
    rules = RuleSet(RuleConfig.from_json_file(directory / RULES_FILE), feature_names)
    policy = CascadePolicy(Thresholds.from_dict(manifest["thresholds"]), bool(manifest.get("use_anomaly", True)))
    cascade = Cascade(
        rules=rules, stages=stages, policy=policy, version=manifest["version"], feature_names=feature_names,
        feature_config=config, metrics=manifest.get("metrics"),
    )
    return LoadedBundle(cascade=cascade, manifest=manifest, version=manifest["version"], feature_config=config,
                        path=directory)
