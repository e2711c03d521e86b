"""Package discovery for `gen`: each top folder installs as one `gen.*` package with all its
sub-packages (api/ is `gen` itself: gen.fit, gen.Detector, gen.load), found here rather than
listed by hand in pyproject.toml.
The version is read from runtime/version.py, the one place it is written. Everything else
(metadata, dependencies, extras) lives in pyproject.toml."""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOTS = {"api": "gen", "trainer": "gen.trainer", "exporters": "gen.exporters", "runtime": "gen.runtime", "cli": "gen.cli",
         "pipelines": "gen.pipelines", "serving": "gen.serving"}

packages = []
for folder, name in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

VERSION = re.search(r'^__version__ = "([^"]+)"$', (Path(__file__).parent / "runtime" / "version.py").read_text(),
                    re.MULTILINE).group(1)

# Non-Python files a package reads at run time (the report page's template).
PACKAGE_DATA = {"gen.runtime": ["templates/*.j2"]}

setup(version=VERSION, packages=packages, package_dir={name: folder for folder, name in ROOTS.items()},
      package_data=PACKAGE_DATA)
