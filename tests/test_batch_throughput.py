"""The throughput command the README's batch figure comes from runs end to end (tiny settings)."""

import json

from benchmarks.batch_throughput import main as throughput_main
from tests.test_cli_harness import SMALL_SHAPE, tiny_bundle


def test_the_throughput_command_measures_the_loop_and_the_batch(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    shape = [str(n) for n in SMALL_SHAPE]
    args = ["--scans", "3", "--shape", *shape, "--bundle", str(tiny_bundle()), "--workers", "1"]
    assert throughput_main([*args, "--no-ray", "--rounds", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["settings"]) == {"loop", "w1"} and record["scans"] == 3 and record["cpu"]
    for setting in record["settings"].values():
        assert setting["runs"][0]["n"] == 3 and setting["whole_per_s"] > 0 and setting["steady_per_s"] > 0
    assert record["settings"]["loop"]["steady_vs_loop"] == 1.0
    assert "| w1 |" in capsys.readouterr().out
