"""The hardware catalog and its strict schema."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from etalon.estimator import EstimatorError, hardware_catalog, load_hardware

REQUIRED = ["a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "gb200", "mi300x", "mi325x", "l4",
            "l40s", "a10g", "tpu-v5e", "tpu-v5p", "rtx-2060", "rtx-3090", "rtx-4060", "rtx-4070-ti", "rtx-4090", "rtx-5090"]


def test_catalog_has_every_requested_device_with_a_source():
    catalog = hardware_catalog()
    assert set(REQUIRED) <= set(catalog)
    text = (resources.files("etalon") / "data" / "hardware.yaml").read_text()
    for key in REQUIRED:
        assert catalog[key].source
        entry = text.split(f"\n{key}:\n", 1)[1]
        assert entry.lstrip().startswith("# Source:"), key


@pytest.mark.parametrize(
    "key, tflops, bandwidth, memory",
    [
        # Dense figures from the vendors' datasheets (sparse numbers halved).
        ("h100-sxm", 989, 3350, 80),
        ("a100-80gb", 312, 2039, 80),
        ("h200", 989, 4800, 141),
        ("mi300x", 1307.4, 5300, 192),
        ("rtx-4090", 165.2, 1008, 24),
    ],
)
def test_dense_datasheet_figures(key, tflops, bandwidth, memory):
    hw = load_hardware(key)
    assert (hw.tflops_bf16, hw.memory_bandwidth_gb_s, hw.memory_gib) == (tflops, bandwidth, memory)


def test_aliases_and_fuzzy_errors():
    assert load_hardware("H100").key == "h100-sxm"
    assert load_hardware("RTX4090").key == "rtx-4090"
    with pytest.raises(EstimatorError, match="unknown hardware 'h1000'.*valid:"):
        load_hardware("h1000")


def test_unknown_key_in_user_yaml_is_rejected(tmp_path):
    entry = yaml.safe_load((resources.files("etalon") / "data" / "hardware.yaml").read_text())["l4"]
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump({"my-gpu": entry}))
    assert load_hardware(good).key == "my-gpu"
    typo = dict(entry)
    typo["memory_bandwith_gb_s"] = typo.pop("memory_bandwidth_gb_s")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"my-gpu": typo}))
    with pytest.raises(EstimatorError, match="did you mean 'memory_bandwidth_gb_s'"):
        load_hardware(bad)
