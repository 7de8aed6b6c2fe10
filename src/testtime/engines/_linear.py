"""A linear layer whose weight is prepacked for oneDNN on CPU.

Measured on the 2-core dev machine (fp32, batch 32, SmolLM2-135M shapes): `F.linear` reaches 55-130 GFLOP/s,
the prepacked oneDNN kernel 150-200 GFLOP/s; for the 576 x 49152 LM head it is 161 vs 55 (bench/engine_throughput.py).
This is the same kernel inductor uses for frozen CPU linears; we call it directly so the decode loop stays a
plain eager function. Results match `F.linear` to fp32 rounding for every batch size. On CUDA (or a torch
build without oneDNN) this is `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PackedLinear"]


def _onednn_available() -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear:
    """y = x @ W.T + b with W (out, in); packs W once at construction when running fp32 on CPU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, batch_hint: int = 32) -> None:
        self.weight = weight.detach().contiguous()
        self.bias = None if bias is None else bias.detach().contiguous()
        self.out_features = weight.shape[0]
        self._packed = None
        if self.weight.device.type == "cpu" and self.weight.dtype == torch.float32 and _onednn_available():
            try:
                self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, batch_hint)
            except RuntimeError:  # an unusual shape or build: the portable path is always correct
                self._packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
