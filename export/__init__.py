"""visiongate export: trained PyTorch models -> ONNX (TensorRT on a GPU) -> Triton model repository.

Needs the ``export`` extra (torch, torchvision, timm). Nothing in ``service`` imports this package.
"""
