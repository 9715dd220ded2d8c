"""The Makefile's self-description and the lock files, checked on the source tree."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _phony_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split()


def test_make_help_describes_every_phony_target():
    done = subprocess.run(  # noqa: S603
        ["make", "-s", "-C", str(ROOT), "help"],  # noqa: S607 - make from PATH
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    described = {line.split()[1]: line for line in done.stdout.splitlines() if line.strip()}
    for target in _phony_targets():
        assert target in described, f"`make help` does not describe {target}"
        assert len(described[target].split()) > 2, f"{target} has no description"


def _pins(lock: str) -> dict[str, Version]:
    text = (ROOT / "requirements" / lock).read_text()
    return {
        canonicalize_name(name): Version(version)
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, re.MULTILINE)
    }


def _declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return [Requirement(spec) for spec in specs]


@pytest.mark.parametrize(("lock", "extra"), [("prod.lock", None), ("dev.lock", "dev")])
def test_the_lock_files_pin_every_declared_dependency_within_its_range(lock, extra):
    # `make lock` regenerates them; a dependency added to pyproject.toml without it fails here
    pins = _pins(lock)
    for requirement in _declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements/{lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
        )


def test_every_pin_in_the_lock_files_has_hashes():
    for lock in ("prod.lock", "dev.lock"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
        for block in blocks:
            if "==" in block.split("\n", 1)[0]:
                assert "--hash=sha256:" in block, block.split("\n", 1)[0]
