"""Peer D: BentoML 1.4 service, 1 worker, no adaptive batching, multipart 'file'.
run: MODEL=model.onnx bentoml serve server_bentoml:Classifier --host 127.0.0.1 --port PORT"""
import os
from pathlib import Path

import bentoml
import onnxruntime as ort

from preprocess import preprocess, top5


@bentoml.service(workers=1, traffic={"timeout": 60})
class Classifier:
    def __init__(self):
        self.sess = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])

    @bentoml.api
    def classify(self, file: Path) -> dict:
        return top5(self.sess.run(None, {"image": preprocess(file.read_bytes())[None]})[0][0])
