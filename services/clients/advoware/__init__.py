"""Advoware: the HMAC-512 token flow and its shared cache (`token`), the HTTP client (`client`),
the typed resource calls (`api.AdvowareAPI`), the answers and their errors (`responses`) and
the path and field table (`paths`)."""
