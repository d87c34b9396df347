"""``make demo``: tiny weights, the real Cog HTTP server on 127.0.0.1, one ``multiview-to-3d`` prediction.

Writes the returned files (model.glb, turntable.mp4, preview.png) into ``demo_out/`` and prints where.
"""

from __future__ import annotations

import json
import sys
import time

from testing.tiny import build_tiny_stacks
from tools.cog_server import ROOT, CogServer, data_uri, decode_data_uri
from tools.example_views import EXAMPLE_DIR

OUT_DIR = ROOT / "demo_out"
# Without an upload URL the server returns files as data URIs, which carry the MIME type but not the name.
OUTPUT_NAMES = {"model/gltf-binary": "model.glb", "video/mp4": "turntable.mp4", "image/png": "preview.png"}


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    weights = OUT_DIR / "weights"
    build_tiny_stacks(weights)
    server = CogServer(weights, OUT_DIR / "server.log")
    try:
        health = server.wait_ready()
        print(f"server: {health['status']} at {server.url}", flush=True)
        inputs = {"task": "multiview-to-3d", "seed": 1}
        inputs.update({view.stem: data_uri(view) for view in sorted(EXAMPLE_DIR.glob("*.png"))})
        start = time.perf_counter()
        response = server.predict(inputs).json()
        print(f"prediction: {response['status']} in {time.perf_counter() - start:.1f} s", flush=True)
        print(response.get("logs", ""), end="")
        if response["status"] != "succeeded":
            print(f"error: {response.get('error')}", file=sys.stderr)
            return 1
        for uri in response["output"]:
            name = OUTPUT_NAMES.get(uri.split(";")[0].removeprefix("data:"), "output.bin")
            (OUT_DIR / name).write_bytes(decode_data_uri(uri))
        (OUT_DIR / "metrics.json").write_text(json.dumps(response.get("metrics", {}), indent=2))
        print(f"outputs written to {OUT_DIR}")
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
