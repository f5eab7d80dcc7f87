"""Capacity search: the highest request rate a deployment takes within its SLO, live or simulated."""

from etalon.capacity_search.search import Probe, SearchResult, SearchSettings, search_capacity
from etalon.capacity_search.slo import SLO

__all__ = ["Probe", "SLO", "SearchResult", "SearchSettings", "search_capacity"]
