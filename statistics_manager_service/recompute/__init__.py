"""The recomputation layer: plans which statistics a change touches, loads what the engine needs
from storage, runs the pure engine, writes the result back; and computes, by the same path, the
levels that are not stored when they are asked for."""

from statistics_manager_service.recompute.updater import Recomputed, StatisticsUpdater

__all__ = ["Recomputed", "StatisticsUpdater"]
