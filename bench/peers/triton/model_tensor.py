"""Triton python-backend model: the client decodes and sends the graph's input tensor (``INPUT``:
``FP32 [3, 224, 224]`` for the reference pipeline, ``UINT8 [224, 224, 3]`` for visiongate's);
dynamic batching hands ``execute()`` several requests, run as one onnxruntime batch."""

import json

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"])["parameters"]
        self.sess = ort.InferenceSession(
            params["ONNX_PATH"]["string_value"], providers=["CPUExecutionProvider"]
        )
        self.input = self.sess.get_inputs()[0].name

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        y = self.sess.run(None, {self.input: np.concatenate(xs)})[0]
        out, off = [], 0
        for x in xs:
            n = x.shape[0]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", y[off : off + n])]))
            off += n
        return out
