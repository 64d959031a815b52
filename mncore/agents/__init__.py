"""Builtin agents and the factory that maps a manifest node to its agent implementation."""

from __future__ import annotations

from typing import Any

from .aggregator import AggregatorAgent
from .base import Action, Agent, AgentFailure, HandleResult
from .executor import ExecutorAgent
from .module import ModuleAgent
from .router import RouterAgent
from .sensor import SensorAgent

__all__ = ["AGENT_CLASSES", "Action", "Agent", "AgentFailure", "HandleResult", "create_agent"]

AGENT_CLASSES: dict[str, type[Agent]] = {
    "router": RouterAgent,
    "aggregator": AggregatorAgent,
    "sensor": SensorAgent,
    "module": ModuleAgent,
    "executor": ExecutorAgent,
}


def create_agent(node: dict[str, Any]) -> Agent:
    """A fresh, configured (``setup``) agent for a normalised manifest node."""
    agent = AGENT_CLASSES[node["agent_type"]]()
    agent.setup(node)
    return agent
