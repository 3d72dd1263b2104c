"""Job settings: defaults, YAML round trip, and clear errors for typos and bad values."""

from dataclasses import replace

import pytest

from copycat_nuke.config import TrainConfig, from_dict, load_yaml, save_yaml, to_dict
from copycat_nuke.errors import ConfigError


def test_yaml_round_trip_repeats_the_job(tmp_path):
    config = TrainConfig(input="a.####.exr", target="b.####.exr", out="run", steps=10, batch_size=2, seed=3)
    path = save_yaml(config, tmp_path / "config.yaml")
    # relative paths in a YAML file are relative to its folder (absolute ones stay as they are)
    beside = {key: str(tmp_path / getattr(config, key)) for key in ("input", "target", "out")}
    assert load_yaml(TrainConfig, path) == replace(config, **beside)
    absolute = replace(config, **beside)
    assert load_yaml(TrainConfig, save_yaml(absolute, tmp_path / "again.yaml")) == absolute


def test_unknown_key_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input: a.exr\nstpes: 10\n")
    with pytest.raises(ConfigError, match=r"job\.yaml.*stpes"):
        load_yaml(TrainConfig, path)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"steps": "ten"}, "steps must be a whole number"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": 5, "epochs": 5}, "either steps or epochs"),
        ({"model_size": "huge"}, "model_size must be one of"),
        ({"crop_size": 8}, "crop_size"),
        ({"device": "tpu"}, "device must be one of"),
        ({"lstm": "yes"}, "lstm must be true or false"),
        ({"difference_share": 2.0}, "difference_share"),
        ({"level_weights": "finest"}, "level_weights must be one of auto, doubling, equal, pixels"),
        ({"gradient_clip": 0.5}, "gradient_clip must be 0 \\(off\\) or at least 1"),
        ({"gradient_clip": -4}, "gradient_clip must be 0 \\(off\\) or at least 1"),
        ({"gradient_clip": "x"}, "gradient_clip must be a number"),
        ({"gradient_clip": float("inf")}, "gradient_clip must be 0 \\(off\\) or at least 1"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(settings, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(TrainConfig, settings)


def test_yaml_with_python_tags_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("input: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(TrainConfig, path)
    assert not (tmp_path / "pwned").exists()


def test_numbers_as_frame_lists_are_text():
    assert from_dict(TrainConfig, {"frames": 1001}).frames == "1001"


def test_to_dict_is_plain_data():
    data = to_dict(TrainConfig())
    assert data["model_size"] == "medium" and data["steps"] is None
