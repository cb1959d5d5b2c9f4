"""The committed report inputs the report tests share (tests/data/report, read-only) and the
names in them; `load` and `dump` make edited copies under a test's tmp_path."""

import json
from pathlib import Path

DATA = Path(__file__).parent / "data" / "report"
CPU, GPU = DATA / "cpu.json", DATA / "gpu.json"
XEON = "Intel(R) Xeon(R) Platinum 8480+"
H100 = "NVIDIA H100 80GB HBM3"
TEACHER = "tf_efficientnet_lite2.teacher"
INT8 = "tf_efficientnet_lite0.kd.int8_ort"
PRUNED = "tf_efficientnet_lite0.kd.pruned50"
SURVEY = "vit_base_patch16_224.survey"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def dump(data: object, path: Path) -> Path:
    path.write_text(json.dumps(data))
    return path


def without_recall_drops(data: dict) -> dict:
    """`data` with every stored recall drop removed (as files from before the field), so the
    report falls back to the teacher's own recall."""
    for q in data["defectbench"]["quality"]:
        q["recall_drop"] = None
    for b in data["benchmarks"]:
        if b["extra_info"]["quality"]:
            b["extra_info"]["quality"]["recall_drop"] = None
    return data
