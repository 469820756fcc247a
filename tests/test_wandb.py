"""wandb in offline mode: the metrics logged to metrics.jsonl are in the wandb run file, gradients are logged with
watch_wandb, every evaluation's figures are logged as images, and a resumed run continues the same wandb run id. The
run file is read with an independent reader of wandb's record log (32 KiB blocks of [crc32 4 | length 2 | type 1]
records carrying `Record` protobufs)."""
import json
from pathlib import Path

import pytest

from engine.checkpoint import load_checkpoint
from engine.train import run
from tests.tiny_runs import make_tiny_dataset, tiny_config

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    records, payload, position = [], b"", HEADER
    while position + HEADER <= len(data):
        space = BLOCK - position % BLOCK
        if space < HEADER:  # the rest of a block too small for a record header is padding
            position += space
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        payload += data[position + HEADER:position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records


def history(run_file: Path) -> tuple[str, dict[int, dict]]:
    run_id, rows = None, {}
    for record in read_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id = record.run.run_id
        elif kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows[items["_step"]] = items
    return run_id, rows


def test_offline_wandb_logs_every_metric_watches_gradients_and_resumes_the_same_run(tmp_path, monkeypatch,
                                                                                     single_thread):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    dataset = make_tiny_dataset(tmp_path / "data")
    first = tiny_config(dataset, tmp_path, "tracked", "--epochs", "1", "--watch_wandb", "--debug_trajectories", "1",
                        "--debug_maps_per_group", "1").replace(no_wandb=False)  # wandb on: the figures are drawn
    summary = run(first)
    assert summary["figures"]["files"] == ["best.png", "median.png", "worst.png", "trajectory_0.png"]
    run(first.replace(epochs=2))  # resumes last.pt and continues the same wandb run

    folder = tmp_path / "tracked"
    run_id = load_checkpoint(folder / "last.pt")["wandb_run_id"]
    run_files = sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2 and all(path.name == f"run-{run_id}.wandb" for path in run_files)
    logged = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    rows = {}
    for path in run_files:
        file_run_id, part = history(path)
        assert file_run_id == run_id
        rows.update(part)
    for record in logged:
        row = rows[record["step"]]
        for key, value in record.items():
            if key not in ("type", "step", "time") and value is not None:
                assert row[f"{record['type']}/{key}"] == pytest.approx(value), (record["step"], key)
    assert {r["step"] for r in logged if r["type"] == "train"} == {1, 2, 3, 4}
    assert any(key.startswith("gradients/unet.") for row in rows.values() for key in row)  # watch_wandb
    # Every evaluation's figures, logged as images (wandb.Image records pointing at the PNG files it keeps).
    for step in {r["step"] for r in logged if r["type"] == "eval"}:
        for name in ("best", "median", "worst", "trajectory_0"):
            assert rows[step][f"eval/figures/{name}/_type"] == "image-file"
            assert rows[step][f"eval/figures/{name}/path"].endswith(".png")
    assert len(list(folder.glob("wandb/offline-run-*/files/media/images/eval/figures/*.png"))) == 8  # 2 evaluations

