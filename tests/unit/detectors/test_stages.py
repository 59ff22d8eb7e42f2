"""The scoring-stage contract: every shipped stage passes it, and a new stage is one class plus registration."""

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import orjson
import pytest

from fraudstream.detectors.bundle import MANIFEST, ModelBundleError, load_bundle, save_bundle
from fraudstream.detectors.cascade.cascade import Cascade
from fraudstream.detectors.cascade.registry import STAGE_TYPES, register_stage, unregister_stage
from fraudstream.detectors.cascade.stage import ScoringStage
from fraudstream.detectors.schema import TransactionBatch
from fraudstream.stream.core.encode import decision_keys, encode_decisions
from fraudstream.stream.types import DECISION_KEYS, DecisionRecord, review_item_fields
from fraudstream.training.train import with_features


class ToyStage:
    """A made-up detector: the share of the amount above a fitted cut-off, scored on every row."""

    name: ClassVar[str] = "toy"
    routed: ClassVar[bool] = False
    files: ClassVar[tuple[str, ...]] = ("toy.json",)

    def __init__(self, cut: float, amount_column: int = 0) -> None:
        self.cut = cut
        self.amount_column = amount_column

    def score(self, X, upstream):
        amount = X[:, self.amount_column]
        return np.clip((amount - self.cut) / (amount + 1.0), 0.0, 1.0)

    def contributions(self, X, upstream):
        return None

    def save(self, directory: Path):
        path = Path(directory) / self.files[0]
        path.write_text(json.dumps({"cut": self.cut, "amount_column": self.amount_column}))
        return [path]

    @classmethod
    def load(cls, directory: Path):
        return cls(**json.loads((Path(directory) / cls.files[0]).read_text()))


@pytest.fixture
def toy_registered():
    register_stage(ToyStage, after="anomaly")
    yield
    unregister_stage(ToyStage.name)


@pytest.fixture(scope="module")
def scored_rows(tiny_bundle):
    bundle = load_bundle(tiny_bundle.root)
    frame = tiny_bundle.rows(3000)
    X = with_features(frame, bundle.feature_config)[bundle.cascade.feature_names].to_numpy(np.float64)
    return bundle, X, TransactionBatch.from_frame(frame)


def test_shipped_stages_keep_their_contract_through_save_and_load(scored_rows, tmp_path):
    bundle, X, _ = scored_rows
    assert bundle.cascade.stage_names == tuple(STAGE_TYPES) == ("light", "anomaly", "heavy")
    upstream: dict[str, np.ndarray] = {}
    for stage in bundle.cascade.stages:
        assert isinstance(stage, ScoringStage) and STAGE_TYPES[stage.name] is type(stage)
        written = stage.save(tmp_path)
        assert sorted(p.name for p in written) == sorted(stage.files)
        again = type(stage).load(tmp_path)
        scores = stage.score(X, upstream)
        assert scores.shape == (X.shape[0],) and np.all((scores >= 0) & (scores <= 1))
        np.testing.assert_array_equal(again.score(X, upstream), scores)
        explained = stage.contributions(X[:5], {k: v[:5] for k, v in upstream.items()})
        if explained is not None:
            values, names = explained
            assert values.shape[0] == 5 and values.shape[1] == len(names)
        upstream[stage.name] = scores


def test_the_shipped_stages_give_the_decision_keys_of_the_record():
    assert decision_keys(list(STAGE_TYPES)) == DECISION_KEYS


def test_a_registered_toy_stage_flows_into_scores_json_and_bundle(scored_rows, toy_registered, tmp_path):
    bundle, X, batch = scored_rows
    plain = bundle.cascade
    with_toy = Cascade(plain.rules, [*plain.stages, ToyStage(cut=50.0)], plain.policy, "v-toy", plain.feature_names,
                       plain.feature_config, plain.metrics)
    assert with_toy.stage_names == ("light", "anomaly", "toy", "heavy")  # registry order, not argument order
    before, after = plain.score(X, batch), with_toy.score(X, batch)
    assert list(after.scores) == ["light", "anomaly", "toy", "heavy"]
    np.testing.assert_array_equal(after.toy_score, ToyStage(cut=50.0).score(X, {}))
    assert after.toy_score.max() > 0  # some amounts are above the cut
    # the policy does not read the toy score: decisions and reasons are the shipped cascade's
    np.testing.assert_array_equal(after.decision, before.decision)
    assert after.reasons == before.reasons
    assert set(with_toy.timing_stages()) >= {"toy", "light", "heavy"}

    encoded = encode_decisions(after, batch, np.full(len(batch), 1.7e9), 1.7e9 + 1)
    first = orjson.loads(encoded[0])
    assert tuple(first) == decision_keys(["light", "anomaly", "toy", "heavy"])
    assert first["toy_score"] == pytest.approx(float(after.toy_score[0]))
    # the record the review queue is built from keeps the extra stage's score, and so does its review item
    record = DecisionRecord.from_json(encoded[0])
    assert record.extra_scores == (("toy_score", first["toy_score"]),) and record.heavy_score == first["heavy_score"]
    assert orjson.loads(record.to_json()) == first
    assert float(review_item_fields(record)["toy_score"]) == pytest.approx(first["toy_score"])

    directory = save_bundle(with_toy, tmp_path)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["stages"] == ["light", "anomaly", "toy", "heavy"] and "toy.json" in manifest["files"]
    loaded = load_bundle(directory).cascade
    assert loaded.stage_names == with_toy.stage_names and loaded.stage("toy").cut == 50.0
    again = loaded.score(X, batch)
    for name in after.scores:
        np.testing.assert_array_equal(again.scores[name], after.scores[name])


def test_a_bundle_with_an_unregistered_stage_is_refused(scored_rows, tmp_path):
    bundle, _, _ = scored_rows
    plain = bundle.cascade
    register_stage(ToyStage)
    try:
        directory = save_bundle(Cascade(plain.rules, [*plain.stages, ToyStage(cut=1.0)], plain.policy, "v-t2",
                                        plain.feature_names, plain.feature_config), tmp_path)
    finally:
        unregister_stage(ToyStage.name)
    with pytest.raises(ModelBundleError, match="toy.*not registered"):
        load_bundle(directory)


def test_registering_twice_or_after_an_unknown_stage_is_an_error(toy_registered):
    with pytest.raises(ValueError, match="already registered"):
        register_stage(ToyStage)
    unregister_stage(ToyStage.name)
    with pytest.raises(ValueError, match="no stage named"):
        register_stage(ToyStage, after="nope")
