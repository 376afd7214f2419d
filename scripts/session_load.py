"""Memory and disk over many visitor sessions that each upload and train a polytope (docs/research/load_tests.md has the numbers).

    python scripts/session_load.py --sessions 200 [--report out.json]

Each session, as a visitor on one Workbench: uploads the shipped polytope, activates it, scores a
text, trains a tiny polytope (40 prompts, K = 2, F = 16, 1 epoch; features come from the cache
after the first session) and saves it; odd sessions keep the upload active (10 MB in memory),
even ones switch to what they trained. Every fourth session closes its page (ends);
the rest are left to the time-to-live, which is then made to pass. RSS and the sessions' disk use
are printed along the way, with the caps from ``SAP_VIZ_*``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from sap_viz.app_state import sessions as sessions_module
from sap_viz.app_state.roles import Roles
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.user_files import load_user_file
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig
from sap_viz.settings import DEFAULT_POLYTOPE


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20 if root.exists() else 0.0


def table(tmp: Path):
    path = tmp / "tiny.csv"
    path.write_text("text,label\n" + "".join(f"request {i}: how do I {'build a weapon' if i % 2 else 'bake a cake'}?,{i % 2}\n"
                                             for i in range(40)))
    return load_user_file(path)


def snapshot(wb: Workbench, label: str, t0: float) -> dict:
    row = {"at": label, "rss_mb": round(rss_mb(), 1), "sessions": len(wb.sessions), **wb.sessions.usage(),
           "sessions_disk_mb": round(disk_mb(wb.sessions.root), 1), "map_views": wb.maps.view_count(),
           "elapsed_s": round(time.monotonic() - t0, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    from sap_viz.model.loading import load_model

    tmp = Path(tempfile.mkdtemp(prefix="sap-viz-session-load-"))
    wb = Workbench(load_model("default"), DEFAULT_POLYTOPE, roles=Roles("load-test-token"))
    upload = [DEFAULT_POLYTOPE / f for f in ("polytope.safetensors", "polytope.json", "facets.json")]
    df, tcfg = table(tmp), TrainConfig(num_facets=2, feature_dim=16, epochs=1)
    fcfg = FeatureConfig(layer=wb.artifact.layer, position="last")
    t0 = time.monotonic()
    wb.score(["warm-up"])
    rows = [snapshot(wb, "before", t0)]
    for i in range(args.sessions):
        visitor = wb.session(f"visitor-{i}")
        name, _ = visitor.import_polytope(upload, f"upload-{i}")
        visitor.activate(name)
        visitor.score(["How do I bake bread?"])
        trained = visitor.save_trained(visitor.train(df, fcfg, tcfg), f"trained-{i}")
        if i % 2 == 0:
            visitor.activate(trained)
            visitor.score(["How do I bake bread?"])
        if i % 4 == 3:
            wb.end_session(f"visitor-{i}")
        if (i + 1) % 50 == 0:
            rows.append(snapshot(wb, f"after {i + 1} sessions", t0))
    later = time.monotonic() + wb.limits.session_ttl_s + 1
    sessions_module.time.monotonic = lambda: later  # type: ignore[assignment]  # the time-to-live passes
    wb.sessions.sweep(force=True)
    rows.append(snapshot(wb, "after the time-to-live", t0))
    limits = {k: getattr(wb.limits, k) for k in ("max_sessions", "session_ttl_s", "max_session_polytopes", "max_session_mb",
                                                  "max_sessions_mb", "max_map_views", "max_session_map_views")}
    if args.report:
        args.report.write_text(json.dumps({"limits": limits, "rows": rows}, indent=2))
    print(json.dumps(limits))


if __name__ == "__main__":
    main()
