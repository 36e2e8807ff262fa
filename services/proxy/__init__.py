"""The authenticated Advoware pass-through proxy (`advoware`) and its HTTP request/response handling (`http`)."""
