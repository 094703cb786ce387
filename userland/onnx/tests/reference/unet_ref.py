#!/usr/bin/env python3
"""Independent reference for havn-onnx: runs the ONNX file with onnxruntime.

Reads JSON on stdin: {"model": PATH, "threads": N, "cases": [{"noisy": F32FILE,
"sigma": S, "difficulty": D, "out": F32FILE}]} where F32FILE holds raw little-endian
f32 of shape [1,1,128,128]; writes each case's `denoised` to its `out` file and prints
{"ok": true, "seconds_per_case": ...}.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    req = json.load(sys.stdin)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(req.get("threads", 1))
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(req["model"], sess_options=opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    for case in req["cases"]:
        noisy = np.fromfile(case["noisy"], dtype="<f4").reshape(1, 1, 128, 128)
        feeds = {
            "noisy": noisy,
            "sigma": np.array([case["sigma"]], dtype=np.float32),
            "difficulty": np.array([case["difficulty"]], dtype=np.float32),
        }
        out = sess.run(["denoised"], feeds)[0].astype("<f4")
        out.tofile(case["out"])
    dt = (time.perf_counter() - t0) / max(1, len(req["cases"]))
    print(json.dumps({"ok": True, "seconds_per_case": dt}))


if __name__ == "__main__":
    main()
