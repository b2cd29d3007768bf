"""Which device and dtype "auto" means on this machine; torch is imported only when asked."""


def resolve_device(device: str) -> str:
    """'auto' -> cuda, then mps, then cpu."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str):
    """'auto' -> bfloat16 on GPUs that support it, float16 on other GPUs, float32 on CPU."""
    import torch

    if dtype != "auto":
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"Unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
        return value
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
