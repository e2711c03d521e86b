"""What README.md tells a new user to run points at things that exist."""

from __future__ import annotations

import re
from pathlib import Path

from gen.trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_file_the_readme_names_exists_and_validates():
    named = sorted(set(re.findall(r"configs/[\w.-]+\.yaml", (ROOT / "README.md").read_text())))
    assert named, "the README names no config file"
    for name in named:
        cfg = TrainConfig.from_yaml(ROOT / name)
        assert cfg.family.name and cfg.run.data
