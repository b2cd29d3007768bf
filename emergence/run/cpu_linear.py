"""Linear layers on CPU through oneDNN with prepacked weights, for scoring and decoding passes.

A decoding step multiplies a few dozen rows by every weight matrix of the model, a scoring pass
a few hundred. PyTorch's CPU ``linear`` goes to MKL's sgemm; on the AMD EPYC of BENCHMARKS.md,
oneDNN's linear on a weight reordered once into its blocked layout was 1.6-1.8x faster for the
output layer at 48 rows (x 50,304, hidden 128-512), 1.2-1.4x at 480 rows, and 10-25% faster for
the layers of the body (48 rows, hidden 320). It is the operator ``torch.compile`` emits for CPU
linears (``mkldnn._linear_pointwise`` on a ``mkldnn._reorder_linear_weight``): float32 matmuls,
within float32 rounding of ``F.linear``.
"""

import contextlib
import os

import torch


def available() -> bool:
    """Whether this torch build has oneDNN and the two operators (a private API: checked, not
    assumed), and ``EMERGENCE_ONEDNN`` is not 0 (the switch back to PyTorch's own linear)."""
    if os.environ.get("EMERGENCE_ONEDNN", "1").strip() == "0":
        return False
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (torch.backends.mkldnn.is_available() and ops is not None
                and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def linear(x, packed, bias=None):
    """``F.linear(x, weight, bias)`` with the weight as :class:`PackedWeights` prepared it."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def packable(layer) -> bool:
    """A plain float32 linear layer on the CPU that no hook watches (a hook may move, load or
    change its weight, which a packed copy would not see)."""
    return (isinstance(layer, torch.nn.Linear) and layer.weight.device.type == "cpu"
            and layer.weight.dtype == torch.float32 and layer.weight.layout == torch.strided
            and (layer.bias is None or layer.bias.dtype == torch.float32)
            and not layer._forward_hooks and not layer._forward_pre_hooks)


class PackedWeights:
    """Each weight's packed copy, made on first use and made again if the weight changes (another
    tensor, or the same one modified in place: its version counter moves)."""

    def __init__(self):
        self._copies = {}   # id(weight) -> (weight, version, packed copy)

    def get(self, weight):
        entry = self._copies.get(id(weight))
        if entry is None or entry[0] is not weight or entry[1] != weight._version:
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
            entry = self._copies[id(weight)] = (weight, weight._version, packed)
        return entry[2]

    @contextlib.contextmanager
    def patched(self, module):
        """Every packable linear layer inside ``module`` runs through oneDNN for the duration, then
        gets its own forward back (the model may be shared, e.g. with lm-eval's HFLM)."""
        layers = [m for m in module.modules() if packable(m) and "forward" not in vars(m)]
        try:
            for layer in layers:
                layer.forward = _Forward(self.get(layer.weight), layer.bias)
            yield
        finally:
            for layer in layers:
                vars(layer).pop("forward", None)

    def clear(self):
        self._copies.clear()


class _Forward:
    """A linear layer's forward on its packed weight (a class, not a closure: nothing refers back
    to the layer)."""

    def __init__(self, packed, bias):
        self.packed, self.bias = packed, bias

    def __call__(self, x):
        return linear(x, self.packed, self.bias)
