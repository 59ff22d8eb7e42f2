"""Label export (Parquet and CSV) and the ``users`` / ``labels`` commands against a real Redis."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from fraudstream.cli.main import cli
from fraudstream.review_queue.journal import Journal
from fraudstream.review_queue.label_export import LABEL_COLUMNS

from .conftest import T0, review_record


@pytest.fixture
def labelled(harness):
    harness.add_items(review_record(1, 10, 100.0, 0.9, terminal_id=5), review_record(2, 11, 20.0, 0.4))
    harness.run(harness.store.claim_next("ann"))
    harness.run(harness.store.verdict("ann", 10, "fraud", note="stolen, \"quoted\""))
    harness.run(harness.store.resolve_chargebacks([(2, False)]))
    return harness


def env(h):
    return {"REDIS_URL": h.url, "FRAUDSTREAM_WORKER_REDIS_PREFIX": h.prefix,
            "FRAUDSTREAM_REVIEW_PASSWORD_TIME_COST": "1",
            "FRAUDSTREAM_REVIEW_PASSWORD_MEMORY_KIB": "8192"}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_labels_export_writes_handbook_columns_plus_source_analyst_known_at_note(labelled, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    result = CliRunner().invoke(cli, ["labels", "export", "--format", fmt, "--out", str(out)], env=env(labelled))
    assert result.exit_code == 0, result.output
    assert "wrote 2 labels" in result.output
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out, parse_dates=["TX_DATETIME", "known_at"])
    assert tuple(frame.columns) == LABEL_COLUMNS
    rows = frame.set_index("TRANSACTION_ID")
    assert rows.loc[1, "TX_FRAUD"] == 1 and rows.loc[1, "source"] == "analyst" and rows.loc[1, "analyst"] == "ann"
    assert rows.loc[1, "note"] == "stolen, \"quoted\"" and rows.loc[1, "TERMINAL_ID"] == 5
    assert rows.loc[1, "known_at"] == pd.Timestamp(T0, unit="s")
    assert rows.loc[1, "TX_DATETIME"] == pd.Timestamp(1_525_000_001.0, unit="s")
    assert rows.loc[2, "TX_FRAUD"] == 0 and rows.loc[2, "source"] == "chargeback"


def test_labels_export_names_a_bad_format_and_an_unreachable_redis(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["labels", "export", "--format", "xlsx", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "xlsx" in bad.output
    down = runner.invoke(cli, ["labels", "export", "--format", "csv", "--out", str(tmp_path / "x")],
                         env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.exit_code == 1 and "does not answer" in down.output and "Traceback" not in down.output


def test_users_commands_add_list_set_role_remove(harness):
    runner = CliRunner()
    e = env(harness)
    added = runner.invoke(cli, ["users", "add", "ann"], env=e)
    assert added.exit_code == 0 and "password (shown once):" in added.output
    password = added.output.split("password (shown once):")[1].strip()
    own = runner.invoke(cli, ["users", "add", "root", "--role", "admin", "--password-stdin"], env=e,
                        input="a long secret phrase\n")
    assert own.exit_code == 0 and "a long secret phrase" not in own.output
    assert runner.invoke(cli, ["users", "add", "ann"], env=e).output.strip().endswith("already exists")
    assert runner.invoke(cli, ["users", "add", "bad name!"], env=e).exit_code == 1
    assert runner.invoke(cli, ["users", "set-role", "ann", "admin"], env=e).exit_code == 0
    listing = runner.invoke(cli, ["users", "list"], env=e).output
    assert "ann\tadmin" in listing and "root\tadmin" in listing
    from fraudstream.review_queue.users import UserStore

    store = UserStore(harness.redis, harness.settings.model_copy(update={"password_time_cost": 1,
                                                                          "password_memory_kib": 8192}))
    assert harness.run(store.verify("ann", password)).role == "admin"
    assert harness.run(store.verify("root", "a long secret phrase")) is not None
    assert harness.run(store.verify("ann", "wrong")) is None
    stored = harness.run(harness.redis.hget(harness.store.keys.user("ann"), "password_hash"))
    assert stored.startswith("$argon2id$") and password not in stored
    assert runner.invoke(cli, ["users", "remove", "ann"], env=e).exit_code == 0
    assert runner.invoke(cli, ["users", "remove", "ann"], env=e).output.strip() == "Error: no user 'ann'"
    actions = [entry.action for entry in harness.run(Journal(harness.redis, harness.settings).audit())]
    assert actions == ["user-remove", "set-role", "user-add", "user-add"]


def test_demo_login_makes_the_demo_analyst_with_a_new_password_on_every_run(harness, monkeypatch):
    from fraudstream.cli.users import DEMO_USER, demo_login
    from fraudstream.review_queue.users import UserStore

    for name, value in env(harness).items():
        monkeypatch.setenv(name, value)
    store = UserStore(harness.redis, harness.settings.model_copy(update={"password_time_cost": 1,
                                                                          "password_memory_kib": 8192}))
    name, first = demo_login(harness.url, harness.prefix)
    assert name == DEMO_USER and len(first) >= 16
    assert harness.run(store.verify(DEMO_USER, first)).role == "analyst"
    again, second = demo_login(harness.url, harness.prefix)
    assert again == DEMO_USER and second != first
    assert harness.run(store.verify(DEMO_USER, second)) is not None
    assert harness.run(store.verify(DEMO_USER, first)) is None  # the password printed last time no longer works
    stored = harness.run(harness.redis.hget(harness.store.keys.user(DEMO_USER), "password_hash"))
    assert stored.startswith("$argon2id$") and second not in stored
