from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudstream.cli.simulate import command as simulate_command
from fraudstream.detectors.schema import ALL_COLUMNS
from fraudstream.training.datasets import read_transactions
from fraudstream.training.simulator import (
    DAY_S,
    NOVEL_SCENARIOS,
    SCENARIO_CARD_TESTING,
    SCENARIO_DISTANT_CASHOUT,
    SCENARIO_MERCHANT_BREACH,
    SCENARIO_SLOW_DRAIN,
    SimulationConfig,
    build_population,
    simulate,
    terminals_within_radius,
)

SMALL = SimulationConfig(n_customers=500, n_terminals=1000, nb_days=30, seed=7)
NOVEL = SimulationConfig(n_customers=500, n_terminals=1000, nb_days=30, seed=7, novel_start_date="2018-04-16")


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


@pytest.fixture(scope="module")
def novel():
    return simulate(NOVEL)


def test_same_seed_gives_the_same_frame_and_another_seed_does_not(small):
    pd.testing.assert_frame_equal(simulate(SMALL), small)
    other = simulate(SimulationConfig(n_customers=500, n_terminals=1000, nb_days=30, seed=8))
    assert len(other) != len(small) or not np.array_equal(other["TX_AMOUNT"], small["TX_AMOUNT"])


def test_frame_layout_and_time_columns_agree(small):
    assert list(small.columns) == list(ALL_COLUMNS)
    assert np.array_equal(small["TRANSACTION_ID"], np.arange(len(small)))
    seconds = small["TX_TIME_SECONDS"].to_numpy()
    assert (np.diff(seconds) >= 0).all()
    assert np.array_equal(small["TX_TIME_DAYS"], seconds // DAY_S)
    expected_times = pd.Timestamp("2018-04-01") + pd.to_timedelta(seconds, unit="s")
    assert (small["TX_DATETIME"].to_numpy() == expected_times.to_numpy()).all()
    assert seconds.min() >= 0 and seconds.max() < SMALL.nb_days * DAY_S
    assert str(small["TX_DATETIME"].dtype) == "datetime64[ns]"
    assert set(small["TX_FRAUD"].unique()) <= {0, 1}
    assert np.array_equal(small["TX_FRAUD"] == 1, small["TX_FRAUD_SCENARIO"] > 0)


def test_statistics_of_a_small_run_are_sensible(small):
    profiles, reach = build_population(SMALL)
    active = reach.counts() > 0
    # Poisson mean per customer, times P(0 < time of day < 86400) for Normal(43200, 20000) (~0.969)
    expected_per_day = profiles.mean_tx_per_day[active].sum() * 0.969
    per_day = len(small) / SMALL.nb_days
    assert 0.9 * expected_per_day < per_day < 1.1 * expected_per_day
    legit = small[small["TX_FRAUD_SCENARIO"] == 0]
    assert 40 < legit["TX_AMOUNT"].mean() < 65
    assert (legit["TX_AMOUNT"] >= 0).all()
    assert np.allclose(legit["TX_AMOUNT"], legit["TX_AMOUNT"].round(2))
    time_of_day = small["TX_TIME_SECONDS"] % DAY_S
    assert abs(time_of_day.mean() - DAY_S / 2) < 2_000
    assert 0.002 < small["TX_FRAUD"].mean() < 0.15
    assert {1, 2, 3} <= set(small["TX_FRAUD_SCENARIO"].unique())
    assert SCENARIO_CARD_TESTING not in set(small["TX_FRAUD_SCENARIO"].unique())


def test_legitimate_transactions_use_terminals_within_the_radius(small):
    profiles, _ = build_population(SMALL)
    gap = profiles.customer_xy[small["CUSTOMER_ID"]] - profiles.terminal_xy[small["TERMINAL_ID"]]
    assert (np.hypot(gap[:, 0], gap[:, 1]) < SMALL.radius).all()


def every_pair_within(customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float) -> list[list[int]]:
    """The reference: each customer against every terminal."""
    dist = np.sqrt(((customer_xy[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2))
    return [np.nonzero(row < radius)[0].tolist() for row in dist]


@pytest.mark.parametrize(("n_customers", "n_terminals", "low", "high", "radius"), [
    (700, 1400, 0.0, 100.0, 5.0),  # the simulator's plane
    (300, 500, -3.0, 7.0, 0.4),  # negative coordinates
    (200, 300, 0.0, 100.0, 1e-9),  # almost nobody in reach: cells capped at MAX_GRID_CELLS a side
    (200, 300, 0.0, 100.0, 500.0),  # everything in reach: one cell, customers in blocks
    (50, 0, 0.0, 100.0, 5.0),  # no terminals
])
def test_terminals_within_the_radius_are_those_of_comparing_every_pair(n_customers, n_terminals, low, high, radius):
    rng = np.random.default_rng(n_customers)
    customer_xy = rng.uniform(low, high, (n_customers, 2))
    terminal_xy = rng.uniform(low, high, (n_terminals, 2))
    terminal_xy[: n_terminals // 10] = np.round(terminal_xy[: n_terminals // 10], 1)  # some on cell borders
    reach = terminals_within_radius(customer_xy, terminal_xy, radius)
    found = [reach.terminal_ids[reach.offsets[c]:reach.offsets[c + 1]].tolist() for c in range(n_customers)]
    assert found == every_pair_within(customer_xy, terminal_xy, radius)
    assert len(reach.offsets) == n_customers + 1


def test_every_amount_above_the_threshold_is_fraud(small):
    above = small["TX_AMOUNT"] > SMALL.amount_fraud_threshold
    assert above.any()
    assert (small.loc[above, "TX_FRAUD"] == 1).all()
    scenario_1 = small[small["TX_FRAUD_SCENARIO"] == 1]
    assert (scenario_1["TX_AMOUNT"] > SMALL.amount_fraud_threshold).all()


def test_compromised_terminals_turn_all_their_transactions_into_fraud(small):
    scenario_2 = small[small["TX_FRAUD_SCENARIO"] == 2]
    assert scenario_2["TERMINAL_ID"].nunique() > 10
    for terminal, group in scenario_2.groupby("TERMINAL_ID"):
        span = small[(small["TERMINAL_ID"] == terminal)
                     & small["TX_TIME_SECONDS"].between(group["TX_TIME_SECONDS"].min(), group["TX_TIME_SECONDS"].max())]
        assert (span["TX_FRAUD"] == 1).all(), terminal
        assert group["TX_TIME_DAYS"].max() - group["TX_TIME_DAYS"].min() < 2 * SMALL.terminal_compromise_days


def test_compromised_customers_get_a_share_of_amounts_times_five(small):
    scenario_3 = small[small["TX_FRAUD_SCENARIO"] == 3]
    assert len(scenario_3) > 20
    profiles, _ = build_population(SMALL)
    ratio = scenario_3["TX_AMOUNT"].sum() / profiles.mean_amount[scenario_3["CUSTOMER_ID"]].sum()
    assert 4.0 < ratio < 6.0
    victims = small[small["CUSTOMER_ID"].isin(scenario_3["CUSTOMER_ID"].unique())]
    assert len(scenario_3) < 0.5 * len(victims)


def test_card_testing_never_before_its_date_and_present_after(novel):
    start = pd.Timestamp(NOVEL.novel_start_date)
    card_testing = novel[novel["TX_FRAUD_SCENARIO"] == SCENARIO_CARD_TESTING]
    assert (card_testing["TX_DATETIME"] >= start).all()
    assert (card_testing["TX_FRAUD"] == 1).all()
    days_with_attacks = card_testing["TX_TIME_DAYS"].nunique()
    assert days_with_attacks == NOVEL.nb_days - 15
    # each victim: one burst of 5-15 small amounts within an hour, then 1-3 larger ones at new terminals
    small_ones = card_testing[card_testing["TX_AMOUNT"].between(*NOVEL.novel_burst_amount)]
    bursts = small_ones.groupby(["CUSTOMER_ID", "TX_TIME_DAYS"])
    assert bursts.size().between(*NOVEL.novel_burst_size).mean() > 0.9
    assert (bursts["TX_TIME_SECONDS"].agg(lambda s: s.max() - s.min()) <= NOVEL.novel_burst_span_s).mean() > 0.9
    used = set(zip(novel.loc[novel["TX_FRAUD_SCENARIO"] != 4, "CUSTOMER_ID"],
                   novel.loc[novel["TX_FRAUD_SCENARIO"] != 4, "TERMINAL_ID"]))
    assert not used & set(zip(card_testing["CUSTOMER_ID"], card_testing["TERMINAL_ID"]))


def test_novel_families_leave_the_rest_of_the_stream_unchanged(small, novel):
    rest = novel[~novel["TX_FRAUD_SCENARIO"].isin(NOVEL_SCENARIOS)].drop(columns="TRANSACTION_ID")
    pd.testing.assert_frame_equal(rest.reset_index(drop=True), small.drop(columns="TRANSACTION_ID"))
    assert simulate(NOVEL).equals(novel)


def test_each_novel_family_is_present_from_its_start_and_can_be_turned_off(novel):
    start = pd.Timestamp(NOVEL.novel_start_date)
    for scenario in NOVEL_SCENARIOS:
        rows = novel[novel["TX_FRAUD_SCENARIO"] == scenario]
        assert len(rows) > 0, scenario
        assert (rows["TX_DATETIME"] >= start).all()
    only_drain = simulate(replace(NOVEL, novel_families=(SCENARIO_SLOW_DRAIN,)))
    assert set(only_drain["TX_FRAUD_SCENARIO"].unique()) & set(NOVEL_SCENARIOS) == {SCENARIO_SLOW_DRAIN}


def test_distant_cashout_uses_terminals_far_from_home(novel):
    profiles, _ = build_population(NOVEL)
    rows = novel[novel["TX_FRAUD_SCENARIO"] == SCENARIO_DISTANT_CASHOUT]
    gap = profiles.customer_xy[rows["CUSTOMER_ID"]] - profiles.terminal_xy[rows["TERMINAL_ID"]]
    assert (np.hypot(gap[:, 0], gap[:, 1]) >= NOVEL.cashout_min_distance).all()
    low, high = NOVEL.cashout_factor
    ratio = rows["TX_AMOUNT"].to_numpy() / profiles.mean_amount[rows["CUSTOMER_ID"]]
    assert (ratio >= low - 0.01).all() and (ratio <= high + 0.01).all()


def test_merchant_breach_charges_many_distinct_cards_at_one_terminal_in_a_short_window(novel):
    rows = novel[novel["TX_FRAUD_SCENARIO"] == SCENARIO_MERCHANT_BREACH]
    for _, group in rows.groupby([rows["TX_DATETIME"].dt.floor("D"), "TERMINAL_ID"]):
        assert group["CUSTOMER_ID"].is_unique
        assert (group["TX_TIME_SECONDS"].max() - group["TX_TIME_SECONDS"].min()) <= NOVEL.breach_span_s
    assert rows.groupby([rows["TX_DATETIME"].dt.floor("D"), "TERMINAL_ID"]).size().max() >= NOVEL.breach_cards[0]


def test_slow_drain_repeats_one_small_amount_at_one_terminal_per_card(novel):
    rows = novel[novel["TX_FRAUD_SCENARIO"] == SCENARIO_SLOW_DRAIN]
    per_card = rows.groupby("CUSTOMER_ID").agg(amounts=("TX_AMOUNT", "nunique"), terminals=("TERMINAL_ID", "nunique"),
                                               days=("TX_TIME_DAYS", "nunique"))
    assert (per_card["terminals"] == 1).all()
    assert (per_card["amounts"] <= 2).all()  # a card drained twice in a row may hold two
    assert per_card["days"].max() >= NOVEL.drain_days[0]
    assert rows["TX_AMOUNT"].max() <= NOVEL.drain_amount[1]


def test_card_testing_date_after_the_period_adds_nothing(small):
    late = SimulationConfig(n_customers=500, n_terminals=1000, nb_days=30, seed=7, novel_start_date="2019-01-01")
    assert len(simulate(late)) == len(small)


@pytest.mark.parametrize("change", [{"n_customers": 0}, {"radius": -1.0}, {"start_date": "not a date"},
                                    {"terminals_per_day": 20_000}, {"novel_start_date": "2018-99-01"},
                                    {"novel_families": (9,)}, {"breach_span_s": 0.0}, {"drain_days": (5, 2)}])
def test_bad_configuration_is_rejected_with_the_field_named(change):
    with pytest.raises(ValueError, match="SimulationConfig"):
        SimulationConfig(**change)


def test_simulate_command_writes_a_readable_file_and_a_summary(tmp_path):
    out = tmp_path / "sample.csv.gz"
    args = ["--customers", "200", "--terminals", "400", "--days", "10", "--seed", "3", "--novel-start",
            "2018-04-05", "--out", str(out)]
    result = CliRunner().invoke(simulate_command, args)
    assert result.exit_code == 0, result.output
    frame = read_transactions(out, require_labels=True)
    assert f"{len(frame):,} transactions over 10 days" in result.output
    assert "scenario 4" in result.output
    assert (frame["TX_FRAUD_SCENARIO"] == 4).any()
    first_bytes = out.read_bytes()
    assert CliRunner().invoke(simulate_command, args + ["--quiet"]).exit_code == 0
    assert out.read_bytes() == first_bytes


def test_simulate_command_rejects_an_unknown_suffix_before_working(tmp_path):
    result = CliRunner().invoke(simulate_command, ["--days", "1", "--out", str(tmp_path / "x.txt")])
    assert result.exit_code != 0
    assert "unknown file type" in result.output
    assert not (tmp_path / "x.txt").exists()
