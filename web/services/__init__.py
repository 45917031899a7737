"""Domain services: plain async functions over the database and the Antom client."""
