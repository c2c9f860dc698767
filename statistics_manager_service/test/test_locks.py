"""The hashed locks in locks/ agree with the human-edited requirement files they are made from.

scripts/lock.sh names each lock and its inputs (`lock KIND INPUT...`) and makes it with
pip-compile. Every input pins with `==`; every lock pins each requirement of its inputs at the
same version and has a hash for every package. A requirement changed without re-running
scripts/lock.sh fails here, in CI, before an install from a stale lock could hide it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK_SCRIPT = ROOT / "scripts" / "lock.sh"
LOCKS = ROOT / "locks"
RUNTIME = "runtime"
# The input that every lock installing the package itself includes (pip and the build backend).
BUILD_INPUT = "build-requirements.txt"
RELOCK = "run scripts/lock.sh and commit locks/"


@dataclass(frozen=True)
class Pin:
    """One requirement of an input file."""

    name: str
    version: str
    source: str  # file and line, for messages


@dataclass(frozen=True)
class Locked:
    """One package of a lock."""

    version: str
    hashes: tuple[str, ...]


def lock_inputs() -> dict[str, list[str]]:
    """Return each lock kind and its input files, as scripts/lock.sh makes them."""
    text = LOCK_SCRIPT.read_text(encoding="utf-8")
    kinds = {kind: inputs.split() for kind, inputs in re.findall(r"^lock (\S+) (.+)$", text, re.M)}
    assert kinds, f"no `lock KIND INPUT...` line in {LOCK_SCRIPT}"
    return kinds


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """Return the lines of a requirement file without comments, continuations joined."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append((start, line))
    return lines


def input_pins(name: str) -> list[Pin]:
    """Return the requirements of an input file, following its `-r` includes."""
    path = ROOT / name
    pins: list[Pin] = []
    for number, line in _logical_lines(path):
        source = f"{name}:{number}"
        if line.startswith("-r "):
            included = (path.parent / line[3:].strip()).relative_to(ROOT).as_posix()
            pins.extend(input_pins(included))
            continue
        assert not line.startswith("-"), f"{source}: only pins and -r includes belong in an input: {line}"
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert requirement.url is None and len(specifiers) == 1, f"{source}: pin exactly one version: {line}"
        specifier = specifiers[0]
        assert specifier.operator == "==" and "*" not in specifier.version, f"{source}: pin with ==: {line}"
        pins.append(Pin(canonicalize_name(requirement.name), specifier.version, source))
    return pins


def read_lock(kind: str) -> dict[str, Locked]:
    """Return the packages of a lock by canonical name."""
    path = LOCKS / f"{kind}.txt"
    packages: dict[str, Locked] = {}
    for number, line in _logical_lines(path):
        requirement, *options = line.split()
        hashes = tuple(option.removeprefix("--hash=") for option in options if option.startswith("--hash="))
        assert len(hashes) == len(options), f"{path.name}:{number}: unexpected options in {line}"
        name, separator, version = requirement.partition("==")
        assert separator and version, f"{path.name}:{number}: not pinned with ==: {requirement}"
        packages[canonicalize_name(name)] = Locked(version, hashes)
    return packages


def _with_includes(name: str) -> set[str]:
    """Return an input file and the files it includes with `-r`, recursively."""
    path = ROOT / name
    names = {name}
    for _, line in _logical_lines(path):
        if line.startswith("-r "):
            names |= _with_includes((path.parent / line[3:].strip()).relative_to(ROOT).as_posix())
    return names


def _every_input() -> set[str]:
    return {name for inputs in lock_inputs().values() for listed in inputs for name in _with_includes(listed)}


def test_every_lock_in_the_folder_is_made_by_the_lock_script() -> None:
    made = set(lock_inputs())
    present = {path.stem for path in LOCKS.glob("*.txt")}
    assert present == made, f"locks/ holds {sorted(present)}, scripts/lock.sh makes {sorted(made)}"
    assert {RUNTIME, "build", "demo", "test"} <= made


def test_every_requirement_file_is_an_input_of_a_lock() -> None:
    files = {path.relative_to(ROOT).as_posix() for path in ROOT.glob("*requirements.txt")}
    files |= {path.relative_to(ROOT).as_posix() for path in ROOT.glob("benchmarks/*requirements.txt")}
    assert "service-specific-requirements.txt" in files
    unlocked = files - _every_input()
    assert not unlocked, f"requirement files no lock is made from: {sorted(unlocked)}"


@pytest.mark.parametrize("name", sorted(_every_input()))
def test_every_input_requirement_is_pinned_exactly(name: str) -> None:
    pins = input_pins(name)
    assert pins or any(line.startswith("-r ") for _, line in _logical_lines(ROOT / name))
    seen: dict[str, Pin] = {}
    for pin in pins:
        earlier = seen.setdefault(pin.name, pin)
        assert earlier.version == pin.version, f"{pin.source} and {earlier.source} pin {pin.name} differently"


@pytest.mark.parametrize("kind", sorted(lock_inputs()))
def test_the_lock_pins_every_input_and_hashes_every_package(kind: str) -> None:
    locked = read_lock(kind)
    assert locked
    for name, package in locked.items():
        assert package.hashes, f"locks/{kind}.txt: {name} has no hash; {RELOCK}"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for digest in package.hashes), name
    for input_name in lock_inputs()[kind]:
        for pin in input_pins(input_name):
            assert pin.name in locked, f"{pin.source}: {pin.name} is missing from locks/{kind}.txt; {RELOCK}"
            assert locked[pin.name].version == pin.version, (
                f"{pin.source} pins {pin.name}=={pin.version}, locks/{kind}.txt has "
                f"{locked[pin.name].version}; {RELOCK}"
            )


@pytest.mark.parametrize("kind", sorted(lock_inputs()))
def test_the_lock_is_made_for_python_311(kind: str) -> None:
    head = (LOCKS / f"{kind}.txt").read_text(encoding="utf-8")[:400]
    assert "autogenerated by pip-compile with Python 3.11" in head
    assert "scripts/lock.sh" in head


def test_locks_installing_the_package_run_the_runtime_versions() -> None:
    """The tests, the demo and the benchmarks run what the image ships, version for version."""
    runtime = read_lock(RUNTIME)
    for kind, inputs in lock_inputs().items():
        if BUILD_INPUT not in inputs:
            continue
        locked = read_lock(kind)
        differing = {
            name: (runtime[name].version, package.version)
            for name, package in locked.items()
            if name in runtime and runtime[name].version != package.version
        }
        assert not differing, f"locks/{kind}.txt differs from locks/runtime.txt: {differing}; {RELOCK}"
