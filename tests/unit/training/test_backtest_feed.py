"""Fraud episodes and the card numbers a reissue gives: which card each backtest row is made with."""

import numpy as np

from fraudstream.training.backtest_feed import (
    EPISODE_GAP_S,
    NO_EPISODE,
    CardNumbers,
    fraud_episodes,
    reissued_card,
)

DAY = 86_400.0


def test_a_customers_frauds_split_into_episodes_by_kind_and_by_quiet_time():
    customer = np.array([1, 1, 1, 1, 1, 2, 2, 1])
    t = np.array([0, 1, 2, 3, 3 + EPISODE_GAP_S + 1, 1, 2, 4]) * 1.0
    fraud = np.array([0, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    scenario = np.array([0, 3, 3, 0, 3, 2, 2, 4])
    episodes = fraud_episodes(customer, t, fraud, scenario)
    assert episodes[0] == NO_EPISODE and episodes[3] == NO_EPISODE
    assert episodes[1] == episodes[2]  # same kind, a second apart
    assert episodes[4] != episodes[1]  # same kind, more than the gap later
    assert episodes[7] not in (episodes[1], episodes[4])  # another kind in between
    assert episodes[5] == episodes[6] and episodes[5] not in set(episodes[[1, 4, 7]])  # another customer
    assert len(set(episodes[fraud].tolist())) == 4
    without_kind = fraud_episodes(customer, t, fraud)
    assert without_kind[7] == without_kind[1]  # only the quiet time splits them then


def test_after_a_reissue_only_the_episode_that_got_the_card_listed_keeps_the_old_number():
    # customer 5: an ongoing compromise (rows 0 and 2), its card listed after row 0; then a new attack (row 3)
    customer = np.array([5, 5, 5, 5])
    t = np.array([0.0, 1.0, 2.0, 30 * DAY])
    fraud = np.array([1, 0, 1, 1], dtype=bool)
    scenario = np.array([3, 0, 3, 4])
    episodes = fraud_episodes(customer, t, fraud, scenario)
    cards = CardNumbers(customer, reissue=True, episodes=episodes)
    assert cards.cards(slice(0, 1)).tolist() == [5]
    cards.blocked(5)
    later = cards.cards(slice(1, 4)).tolist()
    new_card = reissued_card(5, 1)
    assert later == [new_card, 5, new_card]  # legit: new card; same compromise: old; new attack: new
    assert CardNumbers(customer, reissue=False, episodes=episodes).cards(slice(0, 4)).tolist() == [5, 5, 5, 5]
