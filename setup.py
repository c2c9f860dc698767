"""Packaging of the Statistics Manager service."""

from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list[str]:
    lines = Path(__file__).with_name(name).read_text(encoding="utf-8").splitlines()
    requirements: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            requirements.extend(_requirements(line[3:].strip()))
        elif line:
            requirements.append(line)
    return requirements


setup(
    name="statistics-manager-service",
    version="1.0.0",
    description="Energy statistics of FlexiHome households: cost, injection, consumption, CO2, over REST",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="AGPL-3.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["statistics_manager_service", "statistics_manager_service.*"]),
    package_data={
        "statistics_manager_service": [
            "openapi/*.yaml",
            "aggregation/*.yaml",
            "storage/migrations/env.py",
            "storage/migrations/script.py.mako",
            "storage/migrations/versions/*.py",
        ]
    },
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "demo": [
            r for r in _requirements("demo-requirements.txt") if r not in _requirements("requirements.txt")
        ]
    },
    entry_points={"console_scripts": ["statistics-manager=statistics_manager_service.__main__:main"]},
)
