"""Model families: one module each, holding its networks, its training step and its
`Family` declaration (registered with `gen.trainer.registry.register`).

BUILTIN is the one registration line a new family adds: its module name here.
"""

BUILTIN = ("autoencoder", "linear", "conv_ae", "autorec", "vae", "gan", "dcgan", "wgan", "infogan", "veegan",
           "adagan", "rbm", "dbm", "glocal")
