-- expect: require-concurrent-index-creation
CREATE UNIQUE INDEX users_email ON users (lower(email));
