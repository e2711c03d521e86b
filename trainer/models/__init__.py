"""Model families: one module each, holding its networks and its training step."""

from types import ModuleType

from . import autoencoder, gan, vae

FAMILY_MODULES: dict[str, ModuleType] = {
    "ae-naive": autoencoder,
    "ae": autoencoder,
    "ae-tied": autoencoder,
    "vae": vae,
    "gan": gan,
}


def family_module(name: str) -> ModuleType:
    return FAMILY_MODULES[name]
