"""``fraudstream bench`` refuses a model directory it cannot use with one clear line, before starting anything."""

from click.testing import CliRunner

from fraudstream.cli.main import cli


def test_a_directory_that_holds_no_model_is_named(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--quick", "--only", "kernel", "--model-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--model-dir" in result.output and "neither a model version directory" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not an exception of the suite


def test_a_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(cli, ["bench", "--model-dir", str(missing)])
    assert result.exit_code == 2
    assert "does not exist" in result.output and str(missing) in result.output
