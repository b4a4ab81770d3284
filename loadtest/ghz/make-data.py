#!/usr/bin/env python3
"""Writes the message lists the data-file scenarios cycle through (ghz sends
the messages of a JSON array round-robin): zipf-data.json (users drawn
Zipf(1.1) over 10,000), mixed-data.json (tiers × endpoints), storm-data.json
(one user in every other message). Run from loadtest/ghz/."""
import json, random

random.seed(7)
def call(user, path="/identify", tier=None):
    entries = [{"key": "user_id", "value": user}, {"key": "path", "value": path}]
    if tier:
        entries.insert(1, {"key": "tier", "value": tier})
    return {"domain": "fingerprint-api", "descriptors": [{"entries": entries}]}

users = 10_000
weights = [1 / (rank ** 1.1) for rank in range(1, users + 1)]
zipf = [call(f"zipf_{u}") for u in random.choices(range(users), weights=weights, k=5000)]
mixed = [call(f"mixed_{random.randrange(users)}", random.choice(["/identify", "/compare", "/health"]),
              random.choice(["free", "pro", "enterprise"])) for _ in range(5000)]
storm = [call("storm") if i % 2 == 0 else call(f"calm_{random.randrange(users)}") for i in range(5000)]
for name, data in [("zipf", zipf), ("mixed", mixed), ("storm", storm)]:
    with open(f"{name}-data.json", "w") as f:
        json.dump(data, f)
