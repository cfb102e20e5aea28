"""Products: what the shop sells, at what price, and how many are in stock."""
