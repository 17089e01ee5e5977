"""Peer: BentoML 1.4 service, 1 worker, no adaptive batching (its batching of image inputs is the
known-buggy path, bentoml/BentoML#5168), multipart ``file``.
run: PIPELINE=reference|visiongate MODEL=model.onnx bentoml serve server_bentoml:Classifier --port PORT"""
import os
from pathlib import Path

import bentoml
import onnxruntime as ort
import pipelines


@bentoml.service(workers=1, traffic={"timeout": 60})
class Classifier:
    def __init__(self):
        self.sess = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.prepare = pipelines.get()

    @bentoml.api
    def classify(self, file: Path) -> dict:
        return pipelines.top5(self.sess.run(None, {self.input: self.prepare(file.read_bytes())[None]})[0][0])
