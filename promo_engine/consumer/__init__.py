"""The Redis Stream consumer (`promo-engine consume`): events read from a consumer group and
recorded by the same path as the HTTP API (`api.recording`).

An interface on top: it may import everything below it, the API's request handling
included.
"""
