"""Benchmarks of automodel-onboard: how long onboarding takes and how fast the generated models train.

``python -m benchmarks`` (from the repository root, in the project's environment) runs them, prints Markdown tables
and writes JSON, a Markdown summary and a PNG plot; see ``python -m benchmarks --help``. Figures are measured here
and recorded in the README; no test asserts a wall-clock limit.
"""
