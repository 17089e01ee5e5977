"""Peer A: Triton python-backend model taking encoded JPEG bytes (a ragged UINT8 tensor), dynamic batching:
decode + preprocess here, one onnxruntime batch per execute()."""
import json
import sys

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"])["parameters"]
        sys.path.insert(0, params["PEERS_DIR"]["string_value"])
        from preprocess import preprocess
        self.preprocess = preprocess
        self.sess = ort.InferenceSession(params["ONNX_PATH"]["string_value"], providers=["CPUExecutionProvider"])

    def execute(self, requests):
        counts, imgs = [], []
        for r in requests:
            jpeg = pb_utils.get_input_tensor_by_name(r, "JPEG").as_numpy()  # uint8 [1, n]: one image
            counts.append(1)
            imgs.append(self.preprocess(jpeg.tobytes()))
        y = self.sess.run(None, {"image": np.stack(imgs)})[0]
        out, off = [], 0
        for n in counts:
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", y[off:off + n])]))
            off += n
        return out
