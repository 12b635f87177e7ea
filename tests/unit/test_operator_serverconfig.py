"""The server's config files are TF Serving text protos."""

from berth_operator import serverconfig, spec


def test_models_config_pins_one_version_under_the_mount_point() -> None:
    md = spec.parse({"model": {"name": "fraud", "storage": {"pvc": {"claimName": "models"}}},
                     "stable": {"version": 4}})
    text = serverconfig.models_config("fraud", serverconfig.base_path(md), 4)
    assert 'name: "fraud"' in text
    assert 'base_path: "/models/fraud"' in text
    assert "specific {\n        versions: 4\n      }" in text
    assert text.startswith("model_config_list {")


def test_an_object_store_model_is_read_from_its_uri() -> None:
    md = spec.parse({"model": {"name": "fraud", "storage": {"uri": "s3://models/fraud/"}},
                     "stable": {"version": 4}})
    assert serverconfig.base_path(md) == "s3://models/fraud"
    assert 'base_path: "s3://models/fraud"' in serverconfig.models_config(
        "fraud", serverconfig.base_path(md), 4)


def test_batching_config_uses_wrapper_syntax_and_skips_unset_fields() -> None:
    text = serverconfig.batching_config(
        spec.Batching(
            max_batch_size=128,
            batch_timeout_micros=1000,
            allowed_batch_sizes=(64, 128),
            pad_variable_length_inputs=True,
        )
    )
    assert text == (
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 1000 }\n"
        "allowed_batch_sizes: 64\n"
        "allowed_batch_sizes: 128\n"
        "pad_variable_length_inputs: true\n"
    )
