"""The built-in campaign types, each an internal plugin like any third-party one."""
