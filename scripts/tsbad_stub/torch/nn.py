"""Stub of `torch.nn` (see the package docstring)."""


def __getattr__(name):
    raise RuntimeError(f"torch is not installed (stub): torch.nn.{name} was used")
