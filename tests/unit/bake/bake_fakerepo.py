"""A tiny fake fabperf repository, so bake tests do not depend on the real scripts."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]

SCRIPTS = {
    "common/base.sh": "#!/bin/bash\nset -euo pipefail\necho base\n",
    "common/exporters.sh": "#!/bin/bash\nset -euo pipefail\necho exporters\n",
    "common/cleanup.sh": "#!/bin/bash\nset -euo pipefail\necho cleanup\n",
    "fabric-node/go.sh": "#!/bin/bash\nset -euo pipefail\necho go\n",
    "fabric-node/fabric.sh": "#!/bin/bash\nset -euo pipefail\necho fabric\n",
    "fabric-node/chaincode.sh": "#!/bin/bash\nset -euo pipefail\necho chaincode\n",
    "caliper-worker/caliper.sh": "#!/bin/bash\nset -euo pipefail\necho caliper\n",
    "monitor/monitor.sh": "#!/bin/bash\nset -euo pipefail\necho monitor\n",
}
FILES = {
    "packer/files/common/fabperf-seal": "#!/bin/sh\npoweroff\n",
    "packer/files/fabric-node/core.yaml": "peer: {}\n",
    "packer/files/caliper-worker/caliper-worker@.service": "[Unit]\n",
    "packer/files/monitor/prometheus.yml": "global: {}\n",
    "dashboards/fabperf.json": "{}\n",
}
GOSS = ["fabric-node/goss/fabric-node.yaml", "caliper-worker/goss/caliper-worker.yaml",
        "monitor/goss/monitor.yaml", "common/goss/common.yaml", "common/goss/hygiene.yaml"]

BASE_SHA = "ab" * 32


def make_repo(dest: Path) -> Path:
    """Copy the real image.yaml files and templates; fake scripts, files and goss specs."""
    for name in ("fabric-node", "caliper-worker", "monitor"):
        (dest / "images" / name).mkdir(parents=True)
        shutil.copy(REPO / "images" / name / "image.yaml", dest / "images" / name)
    shutil.copytree(REPO / "packer" / "templates", dest / "packer" / "templates")
    for rel, text in SCRIPTS.items():
        p = dest / "packer" / "scripts" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for rel, text in FILES.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for rel in GOSS:
        p = dest / "images" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"file:\n  /etc/{Path(rel).stem}:\n    exists: true\n")
    return dest


def write_base(build_dir: Path) -> None:
    """What `bake base-image` leaves: build/base/base-image.json."""
    (build_dir / "base").mkdir(parents=True, exist_ok=True)
    (build_dir / "base" / "base-image.json").write_text(
        json.dumps({"path": str(build_dir / "base" / "debian-12.qcow2"), "sha256": BASE_SHA}))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_yaml(path: Path, **changes: object) -> None:
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc))
