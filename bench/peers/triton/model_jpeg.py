"""Triton python-backend model: encoded JPEG bytes in (a ragged ``UINT8 [1, n]`` per request), decode +
preprocess here with the pipeline named in the config, one onnxruntime batch per ``execute()``."""

import json
import sys

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        sys.path[:0] = [params["PEERS_DIR"], params["ROOT"]]
        import pipelines

        self.prepare = pipelines.get(params["PIPELINE"])
        self.sess = ort.InferenceSession(params["ONNX_PATH"], providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name

    def execute(self, requests):
        imgs = [
            self.prepare(pb_utils.get_input_tensor_by_name(r, "JPEG").as_numpy().tobytes()) for r in requests
        ]
        y = self.sess.run(None, {self.input: np.stack(imgs)})[0]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", y[i : i + 1])])
            for i in range(len(requests))
        ]
