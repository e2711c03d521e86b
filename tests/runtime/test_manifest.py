"""The manifest is parsed into typed records: every malformed value is a refusal naming the
field, never a traceback; format 1 is refused with the command that re-exports it."""

import json

import pytest

from gen.runtime import FORMAT_VERSION, BundleError, load
from gen.runtime.manifest import AncestralSampler, GibbsSampler, Manifest, MixtureSampler, parse


def manifest_of(bundles, family="ae") -> dict:
    return json.loads((bundles[family] / "manifest.json").read_text())


def test_round_trip(bundles):
    raw = manifest_of(bundles, "vae")
    manifest = Manifest.from_dict(raw)
    assert manifest.to_dict() == raw
    assert isinstance(manifest.sampler, AncestralSampler) and manifest.sampler.graph == "decoder"


@pytest.mark.parametrize("version", [2, 3, 4, 7])
def test_older_formats_read_as_format_5(bundles, version):
    """Formats 3, 4 and 8 only added optional fields and 5 none (SHA256SUMS is a file beside the
    manifest): a format-2, -3, -4 or -7 manifest (without those fields) still loads."""
    raw = manifest_of(bundles, "vae") | {"format_version": version}
    for graph in raw["graphs"].values():
        graph.pop("file_bytes")
    if version < 7:
        for key in ("refine",) + (("fitted",) if version == 2 else ()):
            raw.pop(key)
        raw["latent"].pop("codes")
        raw["sampler"].pop("codes")
    if version == 2:
        raw["data"].pop("ratings")
        raw["scoring"].pop("errors")
    manifest = Manifest.from_dict(raw)
    assert manifest.format_version == FORMAT_VERSION and all(g.file_bytes is None for g in manifest.graphs.values())
    if version < 7:
        assert manifest.refine is None and manifest.latent.codes is None
    if version == 2:
        assert manifest.fitted == {} and manifest.scoring.errors is None


def test_format_1_is_refused_with_the_way_out(bundles):
    raw = manifest_of(bundles) | {"format_version": 1}
    with pytest.raises(BundleError, match=r"format_version 1 is no longer served: .* re-export the run folder "
                                          r"with this gen \(gen export RUN_DIR --out BUNDLE\)"):
        Manifest.from_dict(raw)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["scoring"].update(threshold="abc"), r"scoring.threshold: expected a number, got 'abc'"),
    (lambda m: m["scoring"].update(quantile_values=[]), "scoring quantiles must be non-empty and of equal length"),
    (lambda m: m["scoring"].update(threshold=float("inf")), "scoring.threshold must be finite"),
    (lambda m: m.update(data=None), r"data: expected an object, got null"),
    (lambda m: m["data"].update(shape="64"), r"data.shape: expected a list"),
    (lambda m: m["data"]["preprocessing"].update(scale=[1, "x"]), r"data.preprocessing.scale"),
    (lambda m: m["graphs"]["score"].update(opset=True), r"graphs.score.opset: expected int, got true"),
    (lambda m: m.update(extra=1), r"unknown fields \['extra'\]"),
    (lambda m: m["sampler"].update(kind="teleport"), r"sampler.kind: expected one of ancestral, gibbs, mixture"),
    (lambda m: m["sampler"].update(graph="encoder"), r"capability 'sample' needs input 'z' of graph 'encoder'"),
    (lambda m: m.update(sampler=None), r"capability 'sample' without a sampler spec"),
    (lambda m: m["latent"].update(prior="cauchy"), r"latent.prior 'cauchy'"),
    (lambda m: m["latent"].update(dim=5), r"graph 'decoder' takes codes of shape \[4\], expected \[5\]"),
    (lambda m: m["data"].update(kind="audio"), r"data.kind 'audio'"),
    (lambda m: m["graphs"]["score"]["inputs"][0].update(kind="teleport"), r"unknown kind 'teleport'"),
    (lambda m: m.pop("metrics"), r"missing field 'metrics'"),
])
def test_malformed_manifest_is_one_line_refusal(bundles, edit, message):
    raw = manifest_of(bundles)
    edit(raw)
    with pytest.raises(BundleError, match=message) as info:
        Manifest.from_dict(raw, where="B/manifest.json")
    assert str(info.value).startswith("B/manifest.json: ") and "\n" not in str(info.value)


def test_malformed_manifest_refused_at_load(bundle_copy):
    folder = bundle_copy()
    raw = json.loads((folder / "manifest.json").read_text())
    raw["scoring"]["threshold"] = "abc"
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="expected a number"):
        load(folder)


def test_sampler_union_parses_each_kind():
    gibbs = parse(GibbsSampler | AncestralSampler | MixtureSampler | None, {
        "kind": "gibbs", "graph": "gibbs_step", "chain": {"v": "v_next", "h2": "h2_next"},
        "noise": [{"name": "u_h"}, {"name": "u_v", "distribution": "uniform"}]}, "m")
    assert isinstance(gibbs, GibbsSampler) and gibbs.noise[1].name == "u_v" and gibbs.burn_in is None
    assert list(gibbs.chain) == ["v", "h2"]
    from gen.runtime.manifest import SamplerSpec

    mixture = parse(SamplerSpec, {"kind": "mixture", "graphs": ["g0", "g1"], "weights": [0.5, 0.5]}, "m")
    assert isinstance(mixture, MixtureSampler) and mixture.weights == [0.5, 0.5]
    with pytest.raises(BundleError, match=r"m: sampler.weights\[1\]: expected a number, got 'x'"):
        parse(SamplerSpec, {"kind": "mixture", "graphs": ["g0"], "weights": [1, "x"]}, "m", "sampler")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["latent"].update(mean=None), r"latent gaussian prior needs mean \(4,\) and cov \(4, 4\)"),
    (lambda m: m["latent"].update(cov=[[1.0] * 4] * 3), r"got \(4,\) and \(3, 4\)"),
    (lambda m: m["latent"]["cov"][0].__setitem__(0, -5.0), "not a finite symmetric positive semi-definite"),
])
def test_fitted_gaussian_prior_is_checked_at_load(bundles, edit, message):
    raw = manifest_of(bundles, "ae")
    assert raw["latent"]["prior"] == "gaussian"
    edit(raw)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(raw)
