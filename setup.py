"""Package discovery for the `gen` namespace: each top folder installs as one `gen.*`
package with all its sub-packages, found here rather than listed by hand in pyproject.toml.
Everything else (metadata, dependencies, extras) lives in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"trainer": "gen.trainer", "exporters": "gen.exporters", "runtime": "gen.runtime", "cli": "gen.cli",
         "pipelines": "gen.pipelines", "serving": "gen.serving"}

packages = []
for folder, name in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir={name: folder for folder, name in ROOTS.items()})
