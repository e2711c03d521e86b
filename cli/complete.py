"""`gen complete`: rating predictions from a completion bundle. numpy + onnxruntime only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import reported
from .options import BatchOpt, BundleArg, Device, DeviceOpt, JsonOpt, PublicKeyOpt, ThreadsOpt, emit


def complete(
    bundle: BundleArg,
    ratings: Annotated[Path, typer.Argument(help="Known ratings: u.data, ratings.dat, ratings.csv or a "
                                                  "user,item,rating CSV.")],
    out: Annotated[Path, typer.Option(help="Predictions: .csv, .parquet or .npy (user, item, prediction, source).")],
    all_pairs: Annotated[bool, typer.Option("--all", help="Predict every unrated (user, item) pair of the users "
                                                          "in RATINGS.")] = False,
    pairs: Annotated[Optional[Path], typer.Option(help="Predict the (user, item) pairs listed in this file "
                                                       "(user,item CSV).")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="The K unrated items with the highest predictions per "
                                                      "user.", min=1)] = None,
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    threads: ThreadsOpt = None,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict ratings from known ones: every missing pair (--all), listed pairs (--pairs) or
    the top K items per user (--top-k). Users or items the model never saw are folded in from
    their given ratings; the `source` column says when a value is a fallback mean."""
    with reported():
        from gen.runtime import UsageError, load
        from gen.runtime.completion import COMPLETION_FORMATS, Completer, write_predictions
        from gen.runtime.outputs import check_output
        from gen.runtime.ratings import read_pairs, read_ratings

        chosen = [name for name, given in (("--all", all_pairs), ("--pairs", pairs is not None),
                                           ("--top-k", top_k is not None)) if given]
        if len(chosen) != 1:
            raise UsageError("give exactly one of --all, --pairs FILE, --top-k K"
                             + (f" (got {', '.join(chosen)})" if chosen else ""))
        if out.suffix.lower() not in COMPLETION_FORMATS:
            raise UsageError(f"{out}: unsupported output format {out.suffix or '(none)'}; "
                             f"expected one of {', '.join(COMPLETION_FORMATS)}")
        check_output(out, (ratings, pairs), bundle)
        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads,
                     public_key=public_key)
        model.require("complete")
        completer = Completer(model, read_ratings(ratings))
        if all_pairs:  # streamed: memory does not grow with the number of pairs
            blocks, width = completer.iter_missing(), completer.id_width
        elif pairs is not None:
            blocks, width = [completer.predict_pairs(*read_pairs(pairs))], None
        else:
            blocks, width = [completer.top_k(top_k)], completer.id_width
        sources = dict.fromkeys(("model", "user_mean", "item_mean", "global_mean"), 0)

        def counted(stream):
            for block in stream:
                for name in sources:
                    sources[name] += int((block.source == name).sum())
                yield block
        write_predictions(counted(blocks), out, id_width=width)
        rows = sum(sources.values())
        fallbacks = ", ".join(f"{n} {s}" for s, n in sources.items() if n and s != "model") or "none"
        emit({"out": str(out), "rows": rows, "sources": sources, "provider": model.provider}, as_json,
             [f"{rows} predictions -> {out} ({sources['model']} by the model; fallbacks: {fallbacks})"])


COMMANDS = (complete,)
