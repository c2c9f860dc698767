"""Which build is running: the package's version and the source revision it was built from."""

from __future__ import annotations

import dataclasses
from importlib import metadata

from statistics_manager_service.config import Settings

DISTRIBUTION = "statistics-manager-service"
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """The version of the installed package and the revision of its source."""

    version: str
    revision: str


def package_version() -> str:
    """Return the installed package's version, or "unknown" when it runs from a bare source tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def build_info(settings: Settings) -> BuildInfo:
    """Return what this process runs: the package version and the revision given at image build."""
    return BuildInfo(version=package_version(), revision=settings.git_revision)
