"""API clients, one per external system (EspoCRM, Advoware, xAI, Google Calendar), with the
HTTP base (`http`), typed errors (`errors`: will a retry help?) and retries (`retry`).

They know HTTP and the vendor's API, nothing of Motia or of the project's sync rules.
"""
