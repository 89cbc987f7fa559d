"""(being written: PromoService holds the compiled engine and records events)"""


class PromoService:
    def __init__(self, settings, registry):
        self.settings = settings
        self.registry = registry
