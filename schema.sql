-- The one table cachelab's servers serve. Both strategies read and write it;
-- users.json is loaded into it, and the id sequence continues after the highest id.
CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    updated_at TIMESTAMP DEFAULT NOW()
);
