"""Development tools outside the product: the default data's generator (the DVC stage `generate`)."""
