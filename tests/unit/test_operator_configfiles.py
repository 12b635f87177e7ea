"""configfiles: content-addressed config keys, and which live keys pods may still mount."""

from typing import Any

from berth_operator import configfiles, spec

MD = spec.parse(
    {
        "model": {"name": "m", "storage": {"hostPath": {"path": "/m"}}},
        "stable": {"version": 1},
        "batching": {"maxBatchSize": 8},
    }
)
LIVE = {"data": {"models-a.config": "one", "models-b.config": "two", "batching-c.config": "b"}}


def deployment(keys: list[str], *, generation: int = 1, replicas: int = 1, updated: int = 1) -> Any:
    return {
        "metadata": {"generation": generation},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "model", "hostPath": {"path": "/m"}},
                        {
                            "name": "config",
                            "configMap": {"items": [{"key": k, "path": k} for k in keys]},
                        },
                    ]
                }
            }
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": updated},
    }


def test_a_keys_text_depends_only_on_its_name() -> None:
    one = {f.key: f.text for f in configfiles.track_files(MD, 1)}
    two = {f.key: f.text for f in configfiles.track_files(MD, 2)}
    assert [f.path for f in configfiles.track_files(MD, 1)] == ["models.config", "batching.config"]
    shared = one.keys() & two.keys()
    assert len(shared) == 1 and all(one[k] == two[k] for k in shared)


def test_once_every_deployment_has_rolled_only_the_keys_they_name_are_kept() -> None:
    kept = configfiles.still_mounted(LIVE, [deployment(["models-a.config"])])
    assert kept == {"models-a.config": "one"}


def test_while_old_pods_run_every_live_key_is_kept() -> None:
    rolling = deployment(["models-b.config"], replicas=2, updated=1)
    assert configfiles.still_mounted(LIVE, [rolling]) == LIVE["data"]


def test_a_template_the_controller_has_not_seen_keeps_every_live_key() -> None:
    unseen = deployment(["models-b.config"], generation=2)
    assert configfiles.still_mounted(LIVE, [unseen]) == LIVE["data"]


def test_without_a_live_config_map_nothing_is_kept() -> None:
    assert configfiles.still_mounted(None, [deployment(["models-a.config"])]) == {}
