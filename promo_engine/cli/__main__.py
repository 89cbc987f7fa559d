from . import main

main(prog_name="promo-engine")
