"""Small torch helpers: a device with its index, seeding and the random state per device, fresh modules.

The unrolled local search (:mod:`metaloss_sk.unrolled`) runs on whatever
device it is given and must see the random draws a lone network would see;
:mod:`metaloss_sk.batched` asks whether a module ties parameters.
"""

import torch

__all__ = ["fastest_adam", "fresh_module", "has_tied_parameters", "manual_seed", "rng_devices", "rng_state",
           "set_rng_state", "torch_device"]


def torch_device(device):
    """``device`` as a :class:`torch.device`; a CUDA device gets the current index if it names none."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # fork_rng and seeding need the index
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def rng_state(device):
    """Torch's CPU random state and, for a CUDA ``device``, that device's (else None)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state, device):
    """Restore what :func:`rng_state` returned for ``device``."""
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


def rng_devices(device):
    """The CUDA devices :func:`torch.random.fork_rng` must save and restore for ``device``."""
    return [device.index] if device.type == "cuda" else []


def manual_seed(seed, device):
    """Seed torch's generators for work on ``device``, as :func:`torch.manual_seed` does."""
    # torch.manual_seed for CPU and CUDA, where it would also visit every other
    # backend, at a cost above that of a small network's training step.
    if device.type not in ("cpu", "cuda"):
        torch.manual_seed(seed)
        return
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def fastest_adam(device):
    """Keyword arguments for the fastest :class:`torch.optim.Adam` on ``device``."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": False}


def fresh_module(module_factory, device):
    """``(module, its named parameters)``: a new module from ``module_factory``, on ``device``."""
    module = module_factory()
    # Module.to walks every submodule: skip it where the factory built on the device.
    params = dict(module.named_parameters())
    if any(p.device != device for p in params.values()):
        module = module.to(device)
        params = dict(module.named_parameters())
    return module, params


def has_tied_parameters(module):
    """Whether one parameter of ``module`` is registered under several names."""
    return sum(1 for _ in module.named_parameters(remove_duplicate=False)) != len(dict(module.named_parameters()))
