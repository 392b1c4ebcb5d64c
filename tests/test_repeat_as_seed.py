"""A repeated Optuna proposal trains the next seed instead of the same model again."""
import optuna
from ray import tune

from platform.repeat_as_seed import RepeatAsSeedOptunaSearch


def test_repeated_proposals_get_new_seeds_and_distinct_ones_do_not(tmp_path):
    space = {"beta": tune.choice([0.5, 0.7])}
    searcher = RepeatAsSeedOptunaSearch(space=space, metric="fid", mode="min", base_seed=10,
                                        sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [searcher.suggest(f"t{i}") for i in range(8)]
    seen: dict = {}
    for config in configs:
        assert config["seed"] == 10 + seen.get(config["beta"], 0)  # n-th repeat of a value: base + n
        seen[config["beta"]] = seen.get(config["beta"], 0) + 1
    assert set(seen) == {0.5, 0.7} and max(seen.values()) >= 2  # both values, and repeats happened
    # the count comes from the study, so a searcher restored from its state continues it
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    restored = RepeatAsSeedOptunaSearch(space=space, metric="fid", mode="min", base_seed=10,
                                        sampler=optuna.samplers.RandomSampler(seed=1))
    restored.restore(path)
    nxt = restored.suggest("t8")
    assert nxt["seed"] == 10 + seen[nxt["beta"]]
