"""Local simulators of the external systems (EspoCRM, Advoware, xAI, Google Calendar).

Each is an aiohttp app that follows the real API (see ../shared/spec/external-apis.md)
closely enough that our clients cannot tell the difference, plus an admin API under
`/_sim/` for tests and demos: fault injection, a request log, reset and seeding.
"""
