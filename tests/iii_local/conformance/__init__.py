"""Conformance tests: one per row of ../shared/spec/iii-engine-0.8.3-semantics.md, each naming the
engine source it reproduces, driving the real motia worker through the stand-in."""
