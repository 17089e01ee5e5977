"""Peer: LitServe with batching (max_batch_size 8, batch_timeout 5 ms), multipart ``file``.
run: PIPELINE=reference|visiongate MODEL=model.onnx PORT=... python server_litserve.py"""
import os

import litserve as ls
import numpy as np
import onnxruntime as ort
import pipelines


class Classifier(ls.LitAPI):
    def setup(self, device):
        self.sess = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.prepare = pipelines.get()

    def decode_request(self, request):
        return self.prepare(request["file"].file.read())

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, x):
        return self.sess.run(None, {self.input: x})[0]

    def unbatch(self, output):
        return list(output)

    def encode_response(self, logits):
        return pipelines.top5(logits)


if __name__ == "__main__":
    api = Classifier(max_batch_size=8, batch_timeout=0.005, api_path="/classify")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), num_api_servers=1,
               generate_client_file=False, log_level="warning")
