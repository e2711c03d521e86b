"""`python -m gen ...` is the `gen` command (so that `torchrun --nproc-per-node 2 -m gen train ...`
starts it in every process)."""

from gen.cli.entry import main

main()
