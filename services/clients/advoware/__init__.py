"""Advoware: the API client with its HMAC token flow (`client`) and its path and field table (`paths`)."""
