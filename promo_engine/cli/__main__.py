from promo_engine.cli import main

main(prog_name="promo-engine")
