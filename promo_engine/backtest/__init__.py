"""Marketing's tools that run on history rather than on live events: a synthetic wallet
history (demo data), events files, and the back-test that replays them against campaigns
with the live service's rules, in memory."""
