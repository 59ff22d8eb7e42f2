"""The case file's pure parts: reason contributions, the card's 30-day timeline, terminal figures, new pairs."""

from fraudstream.detectors.features.online import CustomerHistory, TerminalHistory
from fraudstream.review_queue.casefile import DAY_S, is_new_pair, parse_reasons, terminal_view, timeline


def test_reasons_split_into_scaled_contributions_and_tags():
    bars, tags = parse_reasons('["heavy_review:0.759>=0.000", "LIGHT_SCORE:+4.000", "AMOUNT:-2.000", "rule:burst"]')
    assert [(b.name, b.value, b.width_pct) for b in bars] == [("LIGHT_SCORE", 4.0, 100.0), ("AMOUNT", -2.0, 50.0)]
    assert tags == ["heavy_review:0.759>=0.000", "rule:burst"]
    assert parse_reasons("not json") == ([], [])


def test_timeline_terminals_and_new_pairs_come_from_the_online_state():
    t = 100 * DAY_S
    card = CustomerHistory(timestamps=[t - 40 * DAY_S, t - 10 * DAY_S, t - DAY_S, t], transaction_ids=[1, 2, 3, 4],
                           amounts=[5.0, 6.0, 7.0, 8.0], terminal_ids=[9, 9, 8, 7])
    points = timeline(card, {4}, t)
    assert [(p.transaction_id, p.under_review) for p in points] == [(2, False), (3, False), (4, True)]
    assert is_new_pair(card, 7, 4, t) is True and is_new_pair(card, 9, 4, t) is False
    assert is_new_pair(None, 7, 4, t) is None
    terminal = TerminalHistory(timestamps=[t - 31 * DAY_S, t - 5 * DAY_S, t - DAY_S], transaction_ids=[1, 2, 3])
    terminal.set_label(2, t - 5 * DAY_S, True, t - 4 * DAY_S)
    view = terminal_view(9, terminal, t)
    assert (view.volume_30d, view.known_frauds_30d, view.fraud_rate) == (2, 1, 0.5)
    assert terminal_view(9, None, t).fraud_rate is None
