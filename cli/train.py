"""Training-side commands: train, export, models, demo. They import torch lazily, inside the
command, so the serving commands never pay for it.

`gen train` takes the run options as declared flags (generated from
`gen.trainer.config.RunOptions`, so a new run option needs no edit here) and each family's
own options as `--name value` (validated against the family's declaration: `gen models
NAME` lists them).
"""

from __future__ import annotations

import inspect
import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gen.trainer.config import RunOptions
from gen.trainer.options import Flag, specs

from .errors import reported
from .options import JsonOpt, QuietOpt, emit


def parse_family_flags(args: list[str]) -> dict[str, str | bool]:
    """`--name value`, `--name=value` or a bare `--flag` (True) -> {name: text}; values are
    checked later against the family's declared options."""
    from gen.runtime.errors import ConfigError

    flags, i = {}, 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}; family options look like --name value")
        name, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = True
        flags[name.replace("-", "_")] = value
        i += 1
    return flags


def _train(ctx: typer.Context, config: Optional[Path] = None, as_json: bool = False, **run_flags) -> None:
    with reported():
        from gen.trainer.config import check_before_torch, read_yaml

        raw = read_yaml(config) if config else {}
        raw.update({k: v for k, v in run_flags.items() if v is not None and v is not False})
        raw.update(parse_family_flags(ctx.args))
        where = str(config) if config else "option"
        check_before_torch(raw, where)  # a mistyped path or value is refused now, not after torch loads
        from gen.runtime.errors import launched_by_gen
        from gen.trainer import launch
        from gen.trainer.distributed import PeerLost
        from gen.trainer.config import TrainConfig
        from gen.trainer.train import train as run_training

        from gen.trainer.run_folder import run_summary

        cfg = TrainConfig.from_dict(raw, where=where)
        start = time.perf_counter()
        if launch.wanted(cfg):  # --nproc N or --engine ray: processes that each run this command
            run_dir = launch.launch(cfg, as_json)
        else:
            try:
                run_dir = run_training(cfg)
            except PeerLost:
                if launched_by_gen():  # the launcher that started this process says it in one line
                    raise typer.Exit(1) from None
                raise
        if run_dir is None:  # a process other than rank 0's, or rank 0's process printed the summary
            return
        seconds = time.perf_counter() - start  # the whole run: pretraining, log Z, calibration, preview
        summary, lines = run_summary(run_dir, seconds)
        emit(summary, as_json, lines)


def _metavar(constraint) -> str:
    from gen.trainer.options import Choice, Interval

    if isinstance(constraint, Choice):
        return "|".join(constraint.values)
    if isinstance(constraint, Interval):
        return "INT" if constraint.type is int else "FLOAT"
    return "TEXT"


def _train_signature() -> inspect.Signature:
    """ctx, --config, --json, then one flag per run option (values as text: the options'
    own validator converts and checks them, with the same messages as YAML keys)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("config", kw, default=None, annotation=Annotated[Optional[Path], typer.Option(
            help="YAML file with the same keys as the flags (family options too); flags override it.")]),
        inspect.Parameter("as_json", kw, default=False, annotation=JsonOpt),
    ]
    for spec in specs(RunOptions):
        flag = "--" + spec.name.replace("_", "-")
        if isinstance(spec.constraint, Flag):
            annotation = QuietOpt if spec.name == "quiet" else Annotated[bool, typer.Option(flag, help=spec.help)]
            params.append(inspect.Parameter(spec.name, kw, default=False, annotation=annotation))
            continue
        shown = "none" if spec.default is None else spec.default
        annotation = Annotated[Optional[str], typer.Option(
            flag, help=f"{spec.help} ({spec.describe()}; default: {shown})", show_default=False,
            metavar=_metavar(spec.constraint))]
        params.append(inspect.Parameter(spec.name, kw, default=None, annotation=annotation))
    return inspect.Signature(params)


_train.__signature__ = _train_signature()
_train.__doc__ = ("Train a model and write a run folder (checkpoint, config, metrics, calibration, preview).\n\n"
                  "Family options follow as --name value (e.g. --hidden 256,128 --latent-dim 16 --lr 1e-3); "
                  "`gen models NAME` lists them with their defaults and constraints. An option the family "
                  "does not declare is refused.")


class Quantize(str, Enum):
    int8 = "int8"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `gen train`.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")],
    force: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    sign_key: Annotated[Optional[Path], typer.Option(
        help="Sign the bundle with this EC private key (PEM): writes model.sig (needs gen[sign]).")] = None,
    triton: Annotated[bool, typer.Option(
        help="Write a Triton model repository to --out instead: NAME.score, NAME.encoder, ... each with "
             "1/model.onnx, config.pbtxt (KIND_GPU) and configs/cpu.pbtxt.")] = False,
    name: Annotated[Optional[str], typer.Option(help="--triton: model name prefix (default: the run folder's name).")] = None,
    quantize: Annotated[Optional[Quantize], typer.Option(
        help="int8: write the score graph with int8 weights for CPU serving (about 2x faster); its cost "
             "(score difference, flag agreement, AUROC) is measured on the run's held-out rows, recorded in "
             "the manifest, and refused past the tolerance; the threshold is recalibrated.")] = None,
    precision: Annotated[Precision, typer.Option(
        help="fp16: write the score graph in float16 for GPU serving (inputs and outputs stay float32); "
             "its cost is measured, recorded and refused past the tolerance as for --quantize, and the "
             "threshold recalibrated.")] = Precision.fp32,
    as_json: JsonOpt = False,
) -> None:
    """Export a run folder to an ONNX bundle (checked: onnx checker + torch/onnxruntime parity)."""
    with reported():
        from gen.exporters import export_run

        if triton:
            given = [flag for flag, value in (("--force", force), ("--sign-key", sign_key), ("--quantize", quantize),
                                              ("--precision", precision is not Precision.fp32)) if value]
            if given:
                from gen.runtime.errors import ConfigError

                raise ConfigError(f"{', '.join(given)}: not with --triton (a Triton repository holds the float "
                                  "graphs, unsigned; its gen models are replaced in place)")
            export_triton(run_dir, out, name or Path(run_dir).resolve().name, as_json)
            return
        manifest = export_run(run_dir, out, force=force, sign_key=sign_key,
                              quantize=quantize.value if quantize else None, precision=precision.value)
        parity = manifest.parity.graphs
        lines = [f"bundle: {out} (format {manifest.format_version}" + (", signed" if sign_key else "") + ")",
                 f"graphs: {', '.join(manifest.graphs)}",
                 "parity (max |torch - onnxruntime|): " + ", ".join(f"{k} {v.max_abs_diff:.2g}" for k, v in parity.items())]
        q = manifest.quantization
        if q is not None:
            lines.append(f"quantized ({q.method}): {', '.join(q.graphs)}; max score difference {q.max_rel_score_diff:.2%}, "
                         f"flags agree on {q.flag_agreement:.1%} of held-out rows"
                         + (f", AUROC {q.auroc_float:.4f} -> {q.auroc_quantized:.4f}" if q.auroc_float is not None else ""))
        emit({"bundle": str(out), "graphs": list(manifest.graphs), "signed": sign_key is not None,
              "parity": {k: v.max_abs_diff for k, v in parity.items()},
              "quantization": None if q is None else q.__dict__}, as_json, lines)


def export_triton(run_dir: Path, repo: Path, name: str, as_json: bool) -> None:
    """Export the run to a checked bundle in a temporary folder, then its graphs to the Triton
    model repository `repo` (gen.serving.triton)."""
    import tempfile

    from gen.exporters import export_run
    from gen.serving.triton import write_triton_repository

    with tempfile.TemporaryDirectory(prefix="gen-triton-") as tmp:
        bundle = Path(tmp) / name
        export_run(run_dir, bundle)
        written = write_triton_repository(bundle, repo, name=name)
    emit({"repository": str(repo), "models": [p.name for p in written]}, as_json,
         [f"Triton model repository: {repo} ({', '.join(p.name for p in written)}); "
          f"tritonserver --model-repository {repo} (add --model-config-name=cpu on a machine without a GPU)"])


def models(
    name: Annotated[Optional[str], typer.Argument(help="A family: list its options, defaults and constraints.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the model families (or one family's options)."""
    with reported():
        from gen.trainer import registry

        if name is None:
            families = registry.families()
            summary = {n: {"description": f.description, "capabilities": list(f.capabilities),
                           "score": f.score_kind, "sampler": f.sampler is not None,
                           "default_for": list(f.default_for)} for n, f in families.items()}
            width = max(len(n) for n in families)
            lines = [f"{n:<{width}}  {f.description}\n{'':<{width}}  serves: {', '.join(f.capabilities)}"
                     + (f"; the default (--model auto) for {' and '.join(f.default_for)} data" if f.default_for else "")
                     for n, f in families.items()]
            emit(summary, as_json, lines + ["", "`gen models NAME` lists a family's options; `gen train` without "
                                                "--model trains the default family for the data's kind."])
            return
        family = registry.get(name)
        options = [{"name": s.name, "default": s.default, "constraint": s.describe(), "help": s.help}
                   for s in family.option_specs()]
        lines = [f"{family.name}: {family.description}", f"serves: {', '.join(family.capabilities)}"
                 + (f"; score: {family.score_kind}" if family.score_kind else "")
                 + (" by default on images and points; the --score option chooses (auto: by the data's kind)"
                    if family.score_kind_of else ""), "options (--name value, or YAML keys):"]
        for o in options:
            lines.append(f"  --{o['name'].replace('_', '-'):<14} default {json.dumps(o['default']):<12} {o['constraint']}")
            lines.append(f"    {'':<14} {o['help']}")
        emit({"name": family.name, "description": family.description, "capabilities": list(family.capabilities),
              "score": family.score_kind, "options": options}, as_json, lines)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for runs, bundles and outputs.")] = Path("artifacts/demo"),
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per model (default: each family's demo setting).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed for everything.", min=0, max=2**63 - 1)] = 0,
    quiet: QuietOpt = False,
) -> None:
    """The main job: train the demo families, export them, sample PNG grids, score a batch, complete ratings."""
    with reported():
        from gen.cli.demo import run_demo

        result = run_demo(out, epochs=epochs, seed=seed, quiet=quiet, echo=typer.echo)
        typer.echo("sample grids: " + " ".join(str(p) for p in result["grids"]))
        typer.echo(f"scores: {result['scores']}")
        typer.echo(f"report: {result['report']}")
        if result["completions"]:
            typer.echo("completions: " + " ".join(str(p) for p in result["completions"]))


def register(app: typer.Typer) -> None:
    """Add the training-side commands to `app`."""
    app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_train)
    app.command()(export)
    app.command()(models)
    app.command()(demo)
