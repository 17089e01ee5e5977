"""Peer B: plain FastAPI + onnxruntime, one image per request, no batching, multipart 'file'.
run: MODEL=model.onnx uvicorn server_fastapi:app --host 127.0.0.1 --port PORT --workers 1"""
import os

import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile

from preprocess import preprocess, top5

app = FastAPI()
sess = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.post("/classify")
async def classify(file: UploadFile = File(...)) -> dict:
    x = preprocess(await file.read())[None]
    return top5(sess.run(None, {"image": x})[0][0])
