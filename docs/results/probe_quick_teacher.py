"""The quick profile's teacher alone, built in a scratch zoo and scored on `val` at 0.5.

    python docs/results/probe_quick_teacher.py ZOO_DIR > docs/results/quick-teacher-224px.txt

Made when the quick teacher moved from 192 px x 6 epochs to 224 px x 8 (the profile then held
the old values, hence the explicit override; with the current profile it is a no-op). The
committed output comes from this script run on a zoo where an equivalent first version of it
had built the teacher (481 s, recorded in the manifest printed at the end), so its own "build
seconds" line is the cache hit. The rest of the committed quick results (quick-cpu.json,
quick-zoo*.*) predate the change.
"""

import dataclasses
import json
import sys
import time

from defectbench.data.preprocess import preprocess_set
from defectbench.zoo.build import build_zoo
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.profiles import TEACHER, get_profile

root = sys.argv[1]
profile = dataclasses.replace(get_profile("quick"), teacher_size=224, teacher_epochs=8)
start = time.time()
build_zoo(profile, root, [TEACHER], log=print)
print("build seconds", round(time.time() - start))
catalog = Catalog(root, profile)
val = catalog.fixture.split("val")
x = preprocess_set(val, catalog.preprocess(TEACHER))
flagged = catalog.predictor(TEACHER, "fp32", "cpu").predict_proba(x) >= 0.5
y = val.labels == 1
manifest = catalog.manifest(TEACHER)
dev = manifest["dev"]
print("dev acc@0.5", dev["at"]["p0.5"]["accuracy"], "dev auroc", dev["auroc"])
print("val acc@0.5", (flagged == y).mean(), "recall", flagged[y].mean(),
      "spec", (~flagged[~y]).mean())
print(json.dumps({k: manifest[k] for k in ("recipe", "fit", "build_seconds", "key")}, indent=1))
