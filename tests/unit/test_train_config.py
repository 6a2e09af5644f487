"""One config path: the run you asked for, or a clear error before anything starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sign_mlops.cli.app import app
from sign_mlops.sign_model.train_config import (
    ARCHITECTURE_NAMES,
    PRESETS,
    ConfigError,
    TrainConfig,
    config_sources,
    load_overrides,
    resolve_config,
)

runner = CliRunner()


def test_preset_plus_partial_override_keeps_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rate: 0.01\n")
    config = resolve_config("smoke", load_overrides(path))
    assert config.architecture == "tiny_cnn" and config.batch_size == PRESETS["smoke"].batch_size
    assert config.epochs == 3 and config.learning_rate == 0.01
    sources = config_sources("smoke", load_overrides(path), "file c.yaml")
    assert sources["epochs"] == "file c.yaml" and sources["architecture"] == "preset smoke"
    assert sources["seed"] == "default"


@pytest.fixture
def flow_call(monkeypatch) -> dict:
    """`train` stops where it would start the training flow; the dict gets the flow's arguments."""
    import sign_mlops.flows.training

    seen: dict = {}

    def fake_flow(**kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(sign_mlops.flows.training, "training_flow", fake_flow)
    monkeypatch.setattr("sign_mlops.sign_model.quiet.quiet_tensorflow", lambda verbose=False: None)
    return seen


def test_cli_passes_only_the_keys_the_user_wrote(tmp_path, flow_call):
    """The bug: the CLI turned c.yaml into a full default config that replaced the preset."""
    seen = flow_call
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\n")
    result = runner.invoke(app, ["train", "--preset", "smoke", "--config", str(path)])
    assert seen["preset"] == "smoke" and seen["overrides"] == {"epochs": 3}
    assert "tiny_cnn" in result.output and "preset smoke" in result.output


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_cli_accepts_every_preset(name, flow_call):
    """The bug: `--preset studio`, which the README recommends, was refused by the CLI's own list."""
    result = runner.invoke(app, ["train", "--preset", name])
    assert flow_call.get("preset") == name, result.output
    assert PRESETS[name].architecture in result.output


@pytest.mark.parametrize("text, message", [
    ("epochs: three\n", "epochs must be a whole number"),
    ("epochs: 1.5\n", "epochs must be a whole number"),
    ("epochs: true\n", "epochs must be a whole number"),
    ("epochs: -2\n", "epochs must be 1-10000"),
    ("learning_rate: fast\n", "learning_rate must be a number"),
    ("architecture: resnet\n", "architecture must be one of"),
    ("epochz: 3\n", "unknown config key(s) ['epochz']"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("epochs: [\n", "line 2: not valid YAML"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_config("smoke", load_overrides(path))
    assert message in str(info.value)
    result = runner.invoke(app, ["train", "--preset", "smoke", "--config", str(path)])
    assert result.exit_code == 2 and message.split(" [")[0] in result.output and "Traceback" not in result.output


def test_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "epochs": 3,\n}\n')
    with pytest.raises(ConfigError, match=r"c.json line 3: not valid JSON"):
        load_overrides(path)


def test_missing_config_file_and_unknown_preset(tmp_path):
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "file not found" in result.output
    result = runner.invoke(app, ["train", "--preset", "huge"])
    assert result.exit_code == 2 and "huge" in result.output
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config("huge")


def test_architecture_names_match_the_model_builders():
    from sign_mlops.sign_model.model import ARCHITECTURES

    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)
    assert TrainConfig.from_dict(PRESETS["seed"].to_dict()) == PRESETS["seed"]


@pytest.mark.parametrize("name, value, message", [
    ("SIGN_MLOPS_SCORE_INTERVAL", "abc", "not a whole number"),
    ("SIGN_MLOPS_SCORE_INTERVAL", "0", "at least 1"),
    ("SIGN_MLOPS_RETRAIN_CRON", "61 * * * *", "not a valid cron"),
    ("SIGN_MLOPS_PRESET", "huge", "not a preset"),
])
def test_bad_service_settings_are_refused_before_serving(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2 and name in result.output and message in result.output


def test_forced_promotion_needs_a_real_reason():
    result = runner.invoke(app, ["promote", "--force", "--why", "   "])
    assert result.exit_code == 2 and "--why" in result.output


def test_version_and_exit_codes_in_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("sign-mlops ")
    assert "3 trained" in runner.invoke(app, ["--help"]).output


def test_the_default_trains_for_cameras_and_left_hands_and_each_preset_says_what_it_changes():
    """#13: the default trains with camera shifts and puts the hand detector in front; `studio` is
    the recipe before #13; `robust` teaches one model both hands instead of using the detector."""
    default, studio, robust = PRESETS["default"], PRESETS["studio"], PRESETS["robust"]
    assert default.photometric > 0 and default.occlusion > 0 and default.mirror == 0.0 and default.hand_detector > 0
    assert PRESETS["camera"] == default  # the old name still runs
    changed = {k for k, v in studio.to_dict().items() if v != default.to_dict()[k]}
    assert changed <= {"photometric", "occlusion", "noise_std", "augment_tail"} and studio.photometric == 0.0
    assert robust.mirror > 0 and robust.hand_detector == 0 and robust.photometric > default.photometric
    assert PRESETS["seed"].photometric == 0.0 and PRESETS["seed"].hand_detector == 0
    lite = {k for k, v in PRESETS["lite"].to_dict().items() if v != default.to_dict()[k]}
    assert lite == {"architecture", "hand_detector", "hand_detector_epochs"}
    assert 0 < PRESETS["lite"].hand_detector < default.hand_detector
    assert PRESETS["lite"].hand_detector_epochs > default.hand_detector_epochs  # the narrow detector trains longer
