"""Local simulators of the external systems (EspoCRM, Advoware, xAI, Google Calendar).

Each is an aiohttp app that follows the real API (see ../shared/spec/external-apis.md)
closely enough that our clients cannot tell the difference, plus an admin API under
`/_sim/` for tests and demos: fault injection, a request log, reset and seeding.

They are independent test doubles: no simulator imports the project (`services`, `src`);
each has its own path table, field names, formats and signing, written from the vendors'
documented behaviour, so a client that gets one of them wrong fails against it. Only
`sandbox.py`, `__main__.py` and `runner.py` wire them to the project's settings.
`tests/simulators/test_independent.py` keeps it so (and no module over 500 lines).
"""
