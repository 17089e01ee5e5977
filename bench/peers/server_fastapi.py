"""Peer: plain FastAPI + onnxruntime, one image per request, no batching, multipart ``file``.
run: PIPELINE=reference|visiongate MODEL=model.onnx uvicorn server_fastapi:app --port PORT --workers 1"""
import os

import onnxruntime as ort
import pipelines
from fastapi import FastAPI, File, UploadFile

app = FastAPI()
sess = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])
INPUT = sess.get_inputs()[0].name
prepare = pipelines.get()


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.post("/classify")
async def classify(file: UploadFile = File(...)) -> dict:  # noqa: B008 - FastAPI's own idiom
    x = prepare(await file.read())[None]
    return pipelines.top5(sess.run(None, {INPUT: x})[0][0])
