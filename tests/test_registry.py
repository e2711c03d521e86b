"""The registry: families are declared once and everything else reads them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gen.trainer import registry
from gen.trainer.registry import Family, Preset

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_families_are_registered_in_order():
    assert registry.names()[:9] == ["ae-naive", "ae", "ae-tied", "pca", "linear-ae", "conv-ae", "autorec", "vae", "gan"]


def test_unknown_family_lists_the_known_ones():
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model='nope': expected one of ae-naive, ae, ae-tied, pca, linear-ae, conv-ae, autorec, vae, gan"):
        registry.get("nope")


def test_declaration_is_checked():
    vae = registry.get("vae")
    with pytest.raises(ValueError, match="a score kind goes with the 'score' capability"):
        Family(**{**vae.__dict__, "name": "bad", "score_kind": None})
    with pytest.raises(ValueError, match="unknown capabilities"):
        Family(**{**vae.__dict__, "name": "bad", "capabilities": ("teleport",)})
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Family(**{**vae.__dict__, "test": Preset(1)}))


def test_a_new_family_is_covered_by_the_contract_test_with_no_other_edit():
    """The throwaway family is one file (tests/throwaway_family.py) registered as a plugin; the
    unmodified contract test trains, exports, loads and checks it."""
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_contract.py", "-p", "tests.throwaway_family",
                           "-k", "throwaway", "-q", "-p", "no:cacheprovider", "-W", "ignore"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    import tests.test_contract as contract

    checks = [name for name in dir(contract) if name.startswith("test_")]
    summary = done.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed)", summary)}
    # every check ran: passed, or skipped where it does not apply (no score errors, say)
    assert counts.get("passed", 0) + counts.get("skipped", 0) == len(checks) and "failed" not in counts, summary
    assert counts["passed"] >= len(checks) - 2, summary
    assert "throwaway" not in registry.names()  # it lives only in that test run


def test_trainer_hooks_are_read_in_one_place():
    """A trainer's optional parts (Trainer protocol) come with their defaults from hooks()."""
    from gen.trainer.registry import TrainerHooks, hooks

    class Plain:
        def step(self, x):
            return {}

    class Own:
        batches_per_step = 2

        def step(self, x):
            return {}

        def fit(self, x, epochs, batch_size, rng):
            return {"loss": 0.0}

    assert hooks(Plain()) == TrainerHooks()
    own = hooks(Own())
    assert own.batches_per_step == 2 and own.fit is not None and own.fit_start is None
