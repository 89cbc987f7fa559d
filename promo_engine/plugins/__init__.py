"""The built-in campaign types, each an internal plugin like any third-party one.

A plugin imports only the core (`promo_engine.core`), as a third-party one would, and no
other plugin.
"""
