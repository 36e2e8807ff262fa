"""The step topology is safe on the real engine 0.8.3.

Row Q1 of ../shared/spec/iii-engine-0.8.3-semantics.md (engine/src/builtins/queue.rs
301-331, one job list per topic): the subscribers of a topic *compete*, each message reaches
one of them. A second step subscribing to a topic would silently steal half of its messages,
so every topic must have exactly one subscribing step, and every topic a step enqueues must
have one. Read statically from the step modules (what the worker registers).
"""

from __future__ import annotations

import importlib.util
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "src" / "steps"


def _load_step_configs() -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {}
    for path in sorted(STEPS.rglob("*_step.py")):
        name = "topology_" + "_".join(path.relative_to(STEPS).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        configs[str(path.relative_to(ROOT))] = module.config
    return configs


@pytest.fixture(scope="module")
def step_configs() -> dict[str, dict[str, Any]]:
    saved = dict(os.environ)
    os.environ.update({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"})
    try:
        return _load_step_configs()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _subscribers(configs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    subs: dict[str, list[str]] = defaultdict(list)
    for path, cfg in configs.items():
        for trigger in cfg.get("triggers", []):
            if getattr(trigger, "type", None) == "queue":
                subs[trigger.topic].append(path)
    return subs


def test_steps_are_found(step_configs: dict[str, dict[str, Any]]) -> None:
    assert len(step_configs) >= 10
    assert _subscribers(step_configs), "no queue step found"


def test_every_topic_has_exactly_one_subscribing_step(step_configs: dict[str, dict[str, Any]]) -> None:
    shared = {topic: paths for topic, paths in _subscribers(step_configs).items() if len(set(paths)) > 1}
    assert not shared, f"topics with competing subscribers (each message would reach only one): {shared}"


def test_every_enqueued_topic_has_a_subscriber(step_configs: dict[str, dict[str, Any]]) -> None:
    subs = _subscribers(step_configs)
    orphans = {
        topic: path
        for path, cfg in step_configs.items()
        for topic in cfg.get("enqueues", [])
        if (topic if isinstance(topic, str) else topic.get("topic")) not in subs
    }
    assert not orphans, f"topics enqueued that no step subscribes to (messages dropped): {orphans}"
